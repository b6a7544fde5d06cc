import { html, nothing } from "lit-html";
import type { Controller } from "../controller";
import type { Translator } from "../i18n";
import type { State, View } from "../store";
import { renderText } from "../text";
import { callsView } from "./calls";
import { historyView } from "./history";
import { icons } from "./icons";
import { settingsView } from "./settings";
import { transferDialog } from "./transfer";
import { voicemailView } from "./voicemail";

export type BannerState = "connected" | "reconnecting" | "disconnected" | "invalidToken" | "certificateNotTrusted";

export function bannerState(s: State): BannerState {
  if (s.connection.state === "Connected") return "connected";
  if (s.connection.reason === "invalidToken") return "invalidToken";
  if (s.connection.reason === "connectionIssue") return "reconnecting";
  if (s.connection.reason === "certificateNotTrusted") return "certificateNotTrusted";
  return "disconnected";
}

function banner(s: State, c: Controller, t: Translator) {
  const b = bannerState(s);
  return html`<div class="banner banner-${b}" data-testid="connection-banner" data-state=${b} role=${b === "connected" ? "none" : "alert"}>
    ${b !== "connected" ? icons.warning : nothing}
    <span data-testid="connection-banner-text">${t(`banner.${b}`)}</span>
    ${b === "connected" && s.session?.server === "demo" ? html`<span class="hint">· ${t("banner.demo")}</span>` : nothing}
    ${b === "invalidToken" || b === "certificateNotTrusted" ? html`<button type="button" class="btn small" data-testid="banner-settings" @click=${() => c.navigate("settings")}>${t("banner.signIn")}</button>` : nothing}
  </div>`;
}

function nav(s: State, c: Controller, t: Translator) {
  const item = (view: View, icon: unknown, extra: unknown = nothing) =>
    html`<button type="button" class="nav-item" data-testid=${`nav-${view}`} aria-current=${s.view === view ? "page" : "false"} @click=${() => c.navigate(view)}>${icon}<span>${t(`nav.${view}`)}</span>${extra}</button>`;
  const badge =
    s.messageWaiting > 0
      ? html`<span class="count" data-testid="voicemail-badge" aria-label=${t("nav.newVoicemail", { count: s.messageWaiting })}>${s.messageWaiting}</span>`
      : nothing;
  return html`<nav class="sidebar" aria-label=${t("nav.main")}>
    <div class="brand"><span class="logo" aria-hidden="true">${icons.phone}</span><span>${t("app.title")}</span></div>
    ${item("calls", icons.phone)} ${item("history", icons.history)}
    ${item("voicemail", icons.voicemail, badge)}
    <span class="spacer"></span>
    ${item("settings", icons.settings)}
    <div class="me hint">${s.session ? (s.session.displayName ?? s.session.user) : ""}</div>
  </nav>`;
}

export function appView(s: State, c: Controller, t: Translator, locale: string) {
  let main;
  switch (s.view) {
    case "calls":
      main = callsView(s, c, t);
      break;
    case "history":
      main = historyView(s, c, t, locale);
      break;
    case "voicemail":
      main = voicemailView(s, c, t, locale);
      break;
    case "settings":
      main = settingsView(s, c, t);
      break;
  }
  return html`<div class="app" ?inert=${s.transfer !== null}>
      ${nav(s, c, t)}
      <div class="content">
        ${banner(s, c, t)}
        <main class="main" id="main">${main}</main>
      </div>
    </div>
    ${s.notice
      ? html`<div class="toast" role="alert" data-testid="notice"><span>${renderText(t, s.notice)}</span><button type="button" class="btn icon-btn" aria-label=${t("notice.dismiss")} @click=${() => c.dismissNotice()}>${icons.close}</button></div>`
      : nothing}
    ${transferDialog(s, c, t)}
    <div class="visually-hidden" role="status" aria-live="polite" data-testid="live-region">${s.live ? renderText(t, s.live) : ""}</div>`;
}
