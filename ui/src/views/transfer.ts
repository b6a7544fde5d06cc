import { html, nothing } from "lit-html";
import { completions, partyLabel } from "../address";
import type { Controller } from "../controller";
import { errorKey } from "../error-codes";
import type { Translator } from "../i18n";
import { callLabel, findCall, isEstablished, transferStatusText, visibleCalls, type State, type TransferMode } from "../store";
import { renderText } from "../text";
import { icons } from "./icons";
import { combo } from "./combo";

const MODES: TransferMode[] = ["person", "call", "voicemail"];

export function transferDialog(s: State, c: Controller, t: Translator) {
  const d = s.transfer;
  if (!d) return nothing;
  const record = d.transferId ? s.transfers[d.transferId] : undefined;
  const original = findCall(s, d.callId);
  const started = record !== undefined;
  const failed = record?.state === "Failed";
  const editable = !started || failed;
  const others = visibleCalls(s).filter((x) => x.id !== d.callId && x.id !== d.consultCallId && isEstablished(x));
  const consult = findCall(s, d.consultCallId);
  const suggestions = completions(d.target, s.session?.directory ?? [], s.history, s.session?.domain);
  const consultSuggestions = completions(d.consultTarget, s.session?.directory ?? [], s.history, s.session?.domain);

  const target = () => {
    if (d.mode === "person" || d.mode === "voicemail") {
      return html`<label class="field-label" for="transfer-target">${t(d.mode === "person" ? "transfer.target" : "transfer.mailbox")}</label>
        ${combo({
          field: "transfer-target",
          testid: "transfer-target-input",
          label: t(d.mode === "person" ? "transfer.target" : "transfer.mailbox"),
          value: d.target,
          suggestions,
          state: s,
          setCompletion: (x) => c.setCompletionState(x),
          onInput: (v) => c.editTransfer({ target: v, missingTarget: false }),
          onEnter: () => void c.submitTransfer(),
        })}
        ${d.mode === "person"
          ? html`<label class="check">
              <input type="checkbox" data-testid="transfer-ring-only" .checked=${d.ringOnly} @change=${(e: Event) => c.editTransfer({ ringOnly: (e.target as HTMLInputElement).checked })} />
              <span>${t("transfer.ringOnly")}<span class="hint block">${t("transfer.ringOnlyHint")}</span></span>
            </label>`
          : nothing}
        <div class="dialog-actions">
          <button type="button" class="btn primary" data-testid="transfer-submit" ?disabled=${d.busy} @click=${() => void c.submitTransfer()}>${icons.transfer}<span>${t("transfer.submit")}</span></button>
        </div>`;
    }
    if (consult || d.consultCallId) {
      const ready = consult !== undefined && consult.state === "Connected";
      const name = consult ? callLabel(s, consult) : partyLabel(d.consultTarget, s.session);
      return html`<p class="consult-status">${ready ? t("transfer.consultReady", { party: name }) : t("transfer.consultCalling", { party: name })}</p>
        <div class="dialog-actions">
          <button type="button" class="btn primary" data-testid="transfer-complete" ?disabled=${!ready || d.busy} @click=${() => void c.completeTransfer()}>${icons.transfer}<span>${t("transfer.complete")}</span></button>
        </div>`;
    }
    if (others.length) {
      return html`<fieldset class="options">
          <legend class="field-label">${t("transfer.otherCalls")}</legend>
          ${others.map(
            (o) => html`<button type="button" class="option-btn" role="radio" data-testid="transfer-call-option" data-call-id=${o.id} aria-checked=${d.selectedCallId === o.id ? "true" : "false"} @click=${() => c.editTransfer({ selectedCallId: o.id, missingTarget: false })}>
              <strong>${callLabel(s, o)}</strong><span class="hint">${t(`state.${o.state}`)}</span>
            </button>`,
          )}
        </fieldset>
        <div class="dialog-actions">
          <button type="button" class="btn primary" data-testid="transfer-submit" ?disabled=${d.busy || !d.selectedCallId} @click=${() => void c.submitTransfer()}>${icons.transfer}<span>${t("transfer.submit")}</span></button>
        </div>`;
    }
    return html`<p class="hint">${t("transfer.noOtherCalls")}</p>
      <label class="field-label" for="transfer-consult">${t("transfer.consult")}</label>
      ${combo({
        field: "transfer-consult",
        testid: "transfer-consult-input",
        label: t("transfer.consult"),
        value: d.consultTarget,
        suggestions: consultSuggestions,
        state: s,
        setCompletion: (x) => c.setCompletionState(x),
        onInput: (v) => c.editTransfer({ consultTarget: v, missingTarget: false }),
        onEnter: () => void c.startConsult(),
      })}
      <div class="dialog-actions">
        <button type="button" class="btn primary" data-testid="transfer-consult-start" ?disabled=${d.busy} @click=${() => void c.startConsult()}>${icons.phone}<span>${t("transfer.consultStart")}</span></button>
      </div>`;
  };

  return html`<div class="backdrop">
    <div class="dialog" role="dialog" aria-modal="true" aria-labelledby="transfer-title" data-testid="transfer-dialog">
      <header class="dialog-head">
        <h2 id="transfer-title">${t("transfer.title", { party: d.party })}</h2>
        <button type="button" class="btn icon-btn" data-testid="transfer-close" aria-label=${t("transfer.close")} @click=${() => c.closeTransfer()}>${icons.close}</button>
      </header>
      ${editable
        ? html`<div class="segmented" role="tablist" aria-label=${t("transfer.modes")}>
              ${MODES.map(
                (m) => html`<button type="button" role="tab" class="segment" data-testid=${`transfer-mode-${m}`} aria-selected=${d.mode === m ? "true" : "false"} @click=${() => c.setTransferMode(m)}>${t(`transfer.mode.${m}`)}</button>`,
              )}
            </div>
            <div class="dialog-body" role="tabpanel">${target()}</div>`
        : nothing}
      ${d.missingTarget ? html`<p class="error" role="alert">${t("transfer.needTarget")}</p>` : nothing}
      ${d.apiError
        ? html`<p class="error" role="alert" data-testid="transfer-error">${t(errorKey(d.apiError.code))} (${d.apiError.code})</p>`
        : nothing}
      ${record
        ? html`<div class="transfer-status status-${record.state}" data-testid="transfer-status" data-state=${record.state === "None" ? "Transferring" : record.state}>
            ${record.state === "Transferring" || record.state === "None" ? html`<span class="spinner" aria-hidden="true"></span>` : nothing}
            ${record.state === "Transferred" ? icons.check : nothing} ${record.state === "Failed" ? icons.warning : nothing}
            <span>${record.state === "Failed" ? t("transfer.status.Failed", { target: record.target }) : renderText(t, transferStatusText(record))}</span>
          </div>
          ${failed
            ? html`<p class="error" role="alert" data-testid="transfer-error">${renderText(t, transferStatusText(record))}</p>
                ${original
                  ? html`<p class="hint">${t("transfer.stillHere", { party: d.party })}</p>
                      ${original.state === "LocalHold"
                        ? html`<button type="button" class="btn" data-testid="transfer-resume" @click=${() => void c.resume(original.id)}>${icons.play}<span>${t("transfer.resume")}</span></button>`
                        : nothing}`
                  : nothing}`
            : nothing}`
        : nothing}
    </div>
  </div>`;
}
