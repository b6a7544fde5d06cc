import type { Language } from "../bindings";
import { en, type MessageKey, type Messages } from "./en";
import { ko } from "./ko";
import { zh } from "./zh";

export type { MessageKey, Messages };
export type Locale = "en" | "ko" | "zh";

export const catalogues: Record<Locale, Messages> = { en, ko, zh };

/** The language names as shown in the language picker (each in its own language). */
export const languageNames: Record<Locale, string> = { en: "English", ko: "한국어", zh: "中文" };

/**
 * The locale for a language preference. "system" follows the system language the backend
 * read from the process locale (`Settings.systemLanguage`: the web view's
 * `navigator.language` says "en" even under `LANG=ko_KR.UTF-8`), and `navigator.language`
 * only when that is missing.
 */
export function resolveLocale(pref: Language | undefined, navigatorLanguage: string | undefined, systemLanguage?: Language | null): Locale {
  if (pref && pref !== "system") return pref;
  if (systemLanguage && systemLanguage !== "system") return systemLanguage;
  const l = (navigatorLanguage ?? "en").toLowerCase();
  if (l.startsWith("ko")) return "ko";
  if (l.startsWith("zh")) return "zh";
  return "en";
}

export type Params = Record<string, string | number>;

export function translate(locale: Locale, key: MessageKey, params?: Params): string {
  const text = catalogues[locale][key] ?? en[key];
  if (!params) return text;
  return text.replace(/\{(\w+)\}/g, (m, name: string) => (name in params ? String(params[name]) : m));
}

export type Translator = (key: MessageKey, params?: Params) => string;

export function translator(locale: Locale): Translator {
  return (key, params) => translate(locale, key, params);
}

/** The BCP 47 tag for `<html lang>` and `Intl`. */
export function htmlLang(locale: Locale): string {
  return locale === "zh" ? "zh-Hans" : locale;
}
