import { describe, expect, it } from "vitest";
import { en } from "./en";
import { ERROR_CODES, errorKey } from "../error-codes";
import { catalogues, resolveLocale, translate, type Locale } from "./index";

const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

describe("i18n catalogues", () => {
  for (const locale of ["ko", "zh"] as Locale[]) {
    it(`${locale} has exactly the English keys`, () => {
      const cat = catalogues[locale] as Record<string, string>;
      const missing = Object.keys(en).filter((k) => !(k in cat));
      const extra = Object.keys(cat).filter((k) => !(k in en));
      expect(missing, `keys missing in ${locale}`).toEqual([]);
      expect(extra, `keys in ${locale} that English does not have`).toEqual([]);
    });

    it(`${locale} keeps every placeholder and has no empty text`, () => {
      const cat = catalogues[locale] as Record<string, string>;
      for (const [k, v] of Object.entries(en)) {
        const tr = cat[k] ?? "";
        expect(tr.trim().length > 0, `${locale}:${k} must not be empty`).toBe(true);
        expect(placeholders(tr), `${locale}:${k} must use the same placeholders as English`).toEqual(placeholders(v));
      }
    });
  }

  it("has words for every error code in every language", () => {
    expect(ERROR_CODES.length > 20, "the list of codes is the generated ErrorCode's").toBe(true);
    for (const locale of ["en", "ko", "zh"] as Locale[]) {
      const cat = catalogues[locale] as Record<string, string>;
      const missing = ERROR_CODES.filter((code) => !cat[`error.${code}`]?.trim());
      expect(missing, `error codes without words in ${locale}`).toEqual([]);
    }
    for (const code of ERROR_CODES) expect(errorKey(code), `${code} has its own words, not the fallback`).toBe(`error.${code}`);
  });

  it("follows navigator.language for the system preference", () => {
    expect(resolveLocale("system", "ko-KR"), "Korean system").toBe("ko");
    expect(resolveLocale("system", "zh-CN"), "Chinese system").toBe("zh");
    expect(resolveLocale("system", "fr-FR"), "other languages fall back to English").toBe("en");
    expect(resolveLocale("zh", "ko-KR"), "an explicit choice wins").toBe("zh");
  });

  it("fills placeholders", () => {
    expect(translate("en", "transfer.fail.busy", { target: "Carol", code: 486 }), "the failure text").toBe("Carol is busy (486)");
  });
});
