import { html, nothing } from "lit-html";
import { partyLabel } from "../address";
import type { ForwardingRules } from "../bindings";
import type { Controller } from "../controller";
import { formatDuration } from "../history";
import type { Translator } from "../i18n";
import type { State } from "../store";
import { icons } from "./icons";

type RuleName = "always" | "busy" | "noAnswer";

type RuleMode = "off" | "voicemail" | "person";

/** Show the target field only when the rule forwards to a person. */
function showTarget(select: HTMLSelectElement): void {
  const input = select.closest(".rule-row")?.querySelector<HTMLInputElement>(".rule-to");
  if (input) input.hidden = (select.value as RuleMode) !== "person";
}

/**
 * One forwarding rule, as one row of the rules grid: label | seconds (noAnswer only; an empty
 * cell otherwise, so the columns line up) | mode | person or number (only for "To a person").
 */
function ruleRow(t: Translator, name: RuleName, to: string | null, after?: number) {
  const mode: RuleMode = to === null ? "off" : to === "voicemail" ? "voicemail" : "person";
  return html`<div class="rule-row" data-rule=${name}>
    <label class="field-label rule-label" for=${`rule-${name}`}>${t(`voicemail.rule.${name}`)}</label>
    <span class="rule-after">
      ${name === "noAnswer"
        ? html`<input class="input narrow" type="number" min="5" max="120" name="noAnswer-after" data-testid="rule-noAnswer-after" aria-label=${t("voicemail.rule.seconds")} .value=${String(after ?? 20)} /><span class="hint">${t("voicemail.rule.seconds")}</span>`
        : nothing}
    </span>
    <select class="input rule-mode" id=${`rule-${name}`} name=${`${name}-mode`} data-testid=${`rule-${name}-mode`} @change=${(e: Event) => showTarget(e.target as HTMLSelectElement)}>
      <option value="off" ?selected=${mode === "off"}>${t("voicemail.rule.off")}</option>
      <option value="voicemail" ?selected=${mode === "voicemail"}>${t("voicemail.rule.toVoicemail")}</option>
      <option value="person" ?selected=${mode === "person"}>${t("voicemail.rule.toPerson")}</option>
    </select>
    <input class="input rule-to" name=${`${name}-to`} data-testid=${`rule-${name}-to`} aria-label=${t("voicemail.rule.person")} placeholder=${t("voicemail.rule.person")} ?hidden=${mode !== "person"} .value=${mode === "person" ? (to ?? "") : ""} />
  </div>`;
}

/** Reads the rules form. */
export function readRules(form: HTMLFormElement): ForwardingRules {
  const f = new FormData(form);
  const dest = (name: RuleName): string | null => {
    const mode = String(f.get(`${name}-mode`) ?? "off");
    if (mode === "off") return null;
    if (mode === "voicemail") return "voicemail";
    const to = String(f.get(`${name}-to`) ?? "").trim();
    return to || null;
  };
  const always = dest("always");
  const busy = dest("busy");
  const noAnswer = dest("noAnswer");
  const after = Number(f.get("noAnswer-after") ?? 20);
  return {
    always: always ? { to: always } : null,
    busy: busy ? { to: busy } : null,
    noAnswer: noAnswer ? { after: Number.isFinite(after) && after > 0 ? Math.round(after) : 20, to: noAnswer } : null,
  };
}

export function voicemailView(s: State, c: Controller, t: Translator, locale: string) {
  if (!s.session?.mailbox) return html`<section class="card page"><p class="empty">${t("voicemail.none")}</p></section>`;
  const when = new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "short" });
  const messages = s.voicemail ?? [];
  const rules = s.rules;
  return html`<div class="page-stack">
    <section class="card page" aria-labelledby="vm-title">
      <header class="page-head">
        <h2 id="vm-title" class="section-title">${t("voicemail.title")}</h2>
        <button type="button" class="btn icon-btn" aria-label=${t("voicemail.refresh")} @click=${() => void c.loadVoicemail()}>${icons.refresh}</button>
      </header>
      <ul class="voicemail-list" data-testid="voicemail-list">
        ${messages.map((m) => {
          const caller = partyLabel(m.caller, s.session);
          return html`<li class="voicemail ${m.heard ? "heard" : "new"}" data-testid="voicemail-message" data-id=${m.id} data-heard=${m.heard ? "true" : "false"}>
            <button type="button" class="btn icon-btn" data-testid="voicemail-play" aria-pressed=${s.playing === m.id ? "true" : "false"} aria-label=${s.playing === m.id ? t("voicemail.stop") : t("voicemail.play", { caller })} @click=${() => void c.playVoicemail(m.id)}>${s.playing === m.id ? icons.stop : icons.play}</button>
            <span class="history-text">
              <strong>${caller}</strong>
              <span class="hint">${when.format(new Date(m.created * 1000))} · ${formatDuration(m.durationMs)}</span>
            </span>
            <span class="badge ${m.heard ? "" : "accent"}">${t(m.heard ? "voicemail.heard" : "voicemail.new")}</span>
            <button type="button" class="btn" data-testid="voicemail-heard" ?disabled=${m.heard} @click=${() => void c.markHeard(m.id)}>${icons.check}<span>${t("voicemail.markHeard")}</span></button>
            <button type="button" class="btn icon-btn danger-text" data-testid="voicemail-delete" aria-label=${t("voicemail.delete")} title=${t("voicemail.delete")} @click=${() => void c.deleteVoicemail(m.id)}>${icons.trash}</button>
          </li>`;
        })}
      </ul>
      ${messages.length === 0 ? html`<p class="empty">${t("voicemail.empty")}</p>` : nothing}
    </section>
    <section class="card page" aria-labelledby="greeting-title">
      <h2 id="greeting-title" class="section-title">${t("voicemail.greeting")}</h2>
      <div class="row">
        <label class="btn file-btn">
          <span>${t("voicemail.greetingUpload")}</span>
          <input type="file" accept=".wav,audio/wav" data-testid="greeting-file" class="visually-hidden" @change=${(e: Event) => {
            const input = e.target as HTMLInputElement;
            const file = input.files?.[0];
            if (file) void c.uploadGreeting(file).finally(() => (input.value = ""));
          }} />
        </label>
        <button type="button" class="btn" data-testid="greeting-reset" @click=${() => void c.resetGreeting()}>${t("voicemail.greetingReset")}</button>
      </div>
    </section>
    <section class="card page" aria-labelledby="rules-title">
      <h2 id="rules-title" class="section-title">${t("voicemail.rules")}</h2>
      <form class="rules" @submit=${(e: Event) => {
        e.preventDefault();
        void c.saveRules(readRules(e.target as HTMLFormElement));
      }}>
        ${ruleRow(t, "always", rules?.always?.to ?? null)} ${ruleRow(t, "busy", rules?.busy?.to ?? null)}
        ${ruleRow(t, "noAnswer", rules?.noAnswer?.to ?? null, rules?.noAnswer?.after)}
        <div class="dialog-actions"><button type="submit" class="btn primary" data-testid="rules-save">${t("voicemail.rulesSave")}</button></div>
      </form>
    </section>
  </div>`;
}
