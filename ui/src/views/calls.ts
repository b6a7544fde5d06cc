import { html, nothing } from "lit-html";
import { completions } from "../address";
import type { Controller } from "../controller";
import { DTMF_KEYS } from "../controller";
import { formatDuration } from "../history";
import type { Translator } from "../i18n";
import { activeCall, callLabel, isEstablished, ringingIncoming, transferorLabel, visibleCalls, type CallView, type State } from "../store";
import { combo } from "./combo";
import { icons } from "./icons";
import { partyLabel } from "../address";

const keyId = (k: string) => (k === "*" ? "star" : k === "#" ? "hash" : k);

export function levelMeter(level: number, label: string) {
  const v = Math.max(0, Math.min(1, level));
  return html`<meter class="meter" data-testid="level-meter" data-level=${v.toFixed(2)} min="0" max="1" low="0.7" high="0.9" optimum="0.3" .value=${v} aria-label=${label}></meter>`;
}

function dialPad(s: State, c: Controller, t: Translator) {
  const target = activeCall(s);
  const toCall = target && target.state === "Connected" ? target : undefined;
  return html`<div class="dialpad" role="group" aria-label=${t("dial.pad")}>
    ${DTMF_KEYS.map(
      (k) =>
        html`<button type="button" class="key" data-testid=${`dialpad-key-${keyId(k)}`} aria-label=${t("dial.key", { key: k })} @click=${() => c.pressKey(k)}>${k}</button>`,
    )}
    ${toCall ? html`<p class="hint dialpad-hint">${t("dial.sendingTones", { party: callLabel(s, toCall) })}</p>` : nothing}
  </div>`;
}

function dialer(s: State, c: Controller, t: Translator) {
  const suggestions = completions(s.address, s.session?.directory ?? [], s.history, s.session?.domain);
  return html`<section class="card dialer" aria-label=${t("dial.call")}>
    <div class="dial-row">
      ${combo({
        field: "address",
        testid: "address-input",
        label: t("dial.address"),
        value: s.address,
        suggestions,
        state: s,
        setCompletion: (x) => c.setCompletionState(x),
        onInput: (v) => c.setAddress(v),
        onEnter: () => void c.call(),
      })}
      <button type="button" class="btn icon-btn" aria-label=${t("dial.clear")} ?disabled=${!s.address} @click=${() => c.setAddress(s.address.slice(0, -1))}>${icons.backspace}</button>
    </div>
    ${dialPad(s, c, t)}
    <button type="button" class="btn primary call-btn" data-testid="call-button" ?disabled=${!s.address.trim()} @click=${() => void c.call()}>
      ${icons.phone}<span>${t("dial.call")}</span>
    </button>
  </section>`;
}

function directory(s: State, c: Controller, t: Translator) {
  const contacts = s.session?.directory ?? [];
  return html`<section class="card directory" aria-labelledby="directory-title">
    <h2 id="directory-title" class="section-title">${t("directory.title")}</h2>
    <ul class="contact-list" data-testid="directory">
      ${contacts.length === 0 ? html`<li class="empty">${t("directory.empty")}</li>` : nothing}
      ${contacts.map(
        (x) => html`<li class="contact" data-testid=${`contact-${x.user}`}>
          <span class="avatar" aria-hidden="true">${x.displayName.slice(0, 1).toUpperCase()}</span>
          <span class="contact-text">
            <span class="contact-name">${x.displayName}</span>
            <span class="contact-role">${t(`role.${x.role}`)}</span>
          </span>
          <button type="button" class="btn icon-btn call-contact" data-testid=${`call-contact-${x.user}`} aria-label=${t("directory.callContact", { name: x.displayName })} @click=${() => void c.call(x.user)}>${icons.phone}</button>
        </li>`,
      )}
    </ul>
  </section>`;
}

function incomingPanel(s: State, c: Controller, t: Translator) {
  const ringing = ringingIncoming(s);
  if (!ringing.length) return nothing;
  return ringing.map((call) => {
    const info = s.incoming[call.id];
    const caller = info ? partyLabel(info.caller.identifier, s.session, info.caller.displayName) : callLabel(s, call);
    const transferor = info?.transferor ? transferorLabel(s, info.transferor) : null;
    return html`<section class="incoming" data-testid="incoming-call" data-call-id=${call.id} role="alertdialog" aria-labelledby=${`incoming-${call.id}`}>
      <div class="incoming-text">
        <span class="eyebrow">${t("incoming.title")}</span>
        <strong id=${`incoming-${call.id}`} data-testid="incoming-caller">${transferor ? t("incoming.transferred", { caller, transferor }) : caller}</strong>
        ${transferor ? html`<span class="hint" data-testid="incoming-transferor">${t("calls.transferredBy", { name: transferor })}</span>` : nothing}
        <span class="hint">${info?.caller.identifier ?? call.remote}</span>
      </div>
      <div class="incoming-actions">
        <button type="button" class="btn danger" data-testid="incoming-decline" @click=${() => void c.decline(call.id)}>${icons.hangUp}<span>${t("incoming.decline")}</span></button>
        <button type="button" class="btn success" data-testid="incoming-accept" @click=${() => void c.accept(call.id)}>${icons.phone}<span>${t("incoming.accept")}</span></button>
      </div>
    </section>`;
  });
}

function consentPanel(s: State, c: Controller, t: Translator) {
  return s.consents.map((x) => {
    const transferor = transferorLabel(s, x.transferor);
    const target = partyLabel(x.target, s.session);
    return html`<section class="incoming consent" data-testid="transfer-consent" data-call-id=${x.callId} role="alertdialog" aria-label=${t("consent.title")}>
      <div class="incoming-text"><span class="eyebrow">${t("consent.title")}</span><strong>${t("consent.text", { transferor, target })}</strong></div>
      <div class="incoming-actions">
        <button type="button" class="btn" data-testid="transfer-consent-decline" @click=${() => void c.consent(x.transferId, false)}>${t("consent.decline")}</button>
        <button type="button" class="btn primary" data-testid="transfer-consent-accept" @click=${() => void c.consent(x.transferId, true)}>${t("consent.accept")}</button>
      </div>
    </section>`;
  });
}

function callItem(s: State, c: Controller, t: Translator, call: CallView) {
  const party = callLabel(s, call);
  const est = isEstablished(call);
  const held = call.state === "LocalHold";
  const focused = activeCall(s)?.id === call.id;
  const timer = call.connectedAt === null ? "00:00" : formatDuration(s.now - call.connectedAt);
  const transferring = Object.values(s.transfers).some((x) => x.callId === call.id && x.state === "Transferring");
  return html`<li
    class="call ${focused ? "focused" : ""}"
    data-testid="call-item"
    data-call-id=${call.id}
    data-state=${call.state}
    data-remote=${call.remote}
    aria-current=${focused ? "true" : "false"}
    @focusin=${() => c.focusCall(call.id)}
    @click=${() => c.focusCall(call.id)}
  >
    <div class="call-head">
      <span class="direction" title=${t(call.direction === "incoming" ? "calls.incoming" : "calls.outgoing")}>
        ${call.direction === "incoming" ? icons.incoming : icons.outgoing}<span class="visually-hidden">${t(call.direction === "incoming" ? "calls.incoming" : "calls.outgoing")}</span>
      </span>
      <span class="call-party-wrap">
        <strong data-testid="call-party">${party}</strong>
        <span class="hint">${call.remote}</span>
        ${call.transferor
          ? html`<span class="hint transferred-by" data-testid="call-transferred-by">${t("calls.transferredBy", { name: transferorLabel(s, call.transferor) })}</span>`
          : nothing}
      </span>
      <span class="badge state-${call.state}">${t(`state.${call.state}`)}</span>
      ${transferring ? html`<span class="badge">${t("calls.transferring")}</span>` : nothing}
      ${call.muted ? html`<span class="badge muted">${t("calls.muted")}</span>` : nothing}
      <span class="timer" data-testid="call-timer" aria-label=${t("calls.callWith", { party })}>${timer}</span>
    </div>
    ${call.state === "Connected" && focused ? levelMeter(s.micLevel, t("calls.micLevel")) : nothing}
    <div class="call-controls">
      <button type="button" class="btn icon-btn" data-testid="call-mute" aria-pressed=${call.muted ? "true" : "false"} aria-label=${t(call.muted ? "calls.unmute" : "calls.mute")} title=${t(call.muted ? "calls.unmute" : "calls.mute")} ?disabled=${!est} @click=${() => void c.toggleMute(call.id)}>${call.muted ? icons.micOff : icons.mic}</button>
      <button type="button" class="btn icon-btn" data-testid="call-hold" aria-pressed=${held ? "true" : "false"} aria-label=${t(held ? "calls.resume" : "calls.hold")} title=${t(held ? "calls.resume" : "calls.hold")} ?disabled=${!est} @click=${() => void c.toggleHold(call.id)}>${held ? icons.play : icons.pause}</button>
      <button type="button" class="btn icon-btn" data-testid="call-keypad" aria-pressed=${s.keypadCallId === call.id ? "true" : "false"} aria-label=${t("calls.keypad")} title=${t("calls.keypad")} ?disabled=${call.state !== "Connected"} @click=${() => c.toggleKeypad(call.id)}>${icons.keypad}</button>
      <button type="button" class="btn" data-testid="call-transfer" ?disabled=${!est} @click=${() => c.openTransfer(call.id)}>${icons.transfer}<span>${t("calls.transfer")}</span></button>
      <button type="button" class="btn danger" data-testid="call-hangup" aria-label=${t("calls.hangUp")} @click=${() => void c.hangUp(call.id)}>${icons.hangUp}<span>${t("calls.hangUp")}</span></button>
    </div>
    ${s.keypadCallId === call.id && call.state === "Connected"
      ? html`<div class="dialpad small" role="group" aria-label=${t("calls.keypad")}>
          ${DTMF_KEYS.map((k) => html`<button type="button" class="key" data-testid=${`dtmf-key-${keyId(k)}`} aria-label=${t("dial.key", { key: k })} @click=${() => void c.dtmf(call.id, k)}>${k}</button>`)}
        </div>`
      : nothing}
  </li>`;
}

export function callsView(s: State, c: Controller, t: Translator) {
  const calls = visibleCalls(s);
  return html`<div class="calls-layout">
    <div class="column">${dialer(s, c, t)}${directory(s, c, t)}</div>
    <div class="column wide">
      ${incomingPanel(s, c, t)} ${consentPanel(s, c, t)}
      <section class="card" aria-labelledby="calls-title">
        <h2 id="calls-title" class="section-title">${t("calls.title")}</h2>
        <ul class="call-list" data-testid="call-list">
          ${calls.map((call) => callItem(s, c, t, call))}
        </ul>
        ${calls.length === 0 ? html`<p class="empty">${t("calls.empty")}</p>` : nothing}
      </section>
    </div>
  </div>`;
}
