import { html, nothing } from "lit-html";
import { partyLabel, shortAddress } from "../address";
import type { Controller } from "../controller";
import { formatDuration, historyTitle } from "../history";
import type { Translator } from "../i18n";
import type { State } from "../store";
import { icons } from "./icons";

export function historyView(s: State, c: Controller, t: Translator, locale: string) {
  const when = new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "short" });
  return html`<section class="card page" aria-labelledby="history-title">
    <header class="page-head">
      <h2 id="history-title" class="section-title">${t("history.title")}</h2>
      ${s.history.length ? html`<button type="button" class="btn" data-testid="history-clear" @click=${() => c.clearHistory()}>${icons.trash}<span>${t("history.clear")}</span></button>` : nothing}
    </header>
    <ul class="history-list" data-testid="history-list">
      ${s.history.map(
        (e) => html`<li class="history-item outcome-${e.outcome}" data-testid="history-item" data-id=${e.id} data-outcome=${e.outcome}>
          <span class="direction" title=${t(e.direction === "incoming" ? "calls.incoming" : "calls.outgoing")}>${e.direction === "incoming" ? icons.incoming : icons.outgoing}<span class="visually-hidden">${t(e.direction === "incoming" ? "calls.incoming" : "calls.outgoing")}</span></span>
          <span class="history-text">
            <strong data-testid="history-title">${historyTitle(t, e, (a, name) => partyLabel(a, s.session, name))}</strong>
            <span class="hint">${when.format(new Date(e.started * 1000))} · ${t(`history.outcome.${e.outcome}`)}</span>
          </span>
          <span class="timer">${formatDuration(e.durationMs)}</span>
          <button type="button" class="btn icon-btn" data-testid="history-call" aria-label=${t("history.callBack", { party: partyLabel(e.party, s.session, e.partyName) })} @click=${() => void c.call(shortAddress(e.party, s.session?.domain))}>${icons.phone}</button>
        </li>`,
      )}
    </ul>
    ${s.history.length === 0 ? html`<p class="empty">${t("history.empty")}</p>` : nothing}
  </section>`;
}
