// Keyboard shortcuts: Ctrl+T transfer, Ctrl+H hold/resume, Ctrl+M mute, Esc closes,
// digits go to the connected call as DTMF (or into the address field), Enter calls.

import type { Controller } from "./controller";
import { activeCall } from "./store";

const DIGIT = /^[0-9*#]$/;

function isEditable(el: EventTarget | null): boolean {
  if (!(el instanceof HTMLElement)) return false;
  if (el.isContentEditable) return true;
  if (el instanceof HTMLTextAreaElement || el instanceof HTMLSelectElement) return true;
  if (el instanceof HTMLInputElement) return !["checkbox", "radio", "button", "submit", "file", "range"].includes(el.type);
  return false;
}

/** Handles a keydown on the document; returns whether it was used. */
export function handleKey(e: KeyboardEvent, c: Controller): boolean {
  const s = c.state;
  const mod = (e.ctrlKey || e.metaKey) && !e.altKey;
  const used = () => {
    e.preventDefault();
    return true;
  };
  if (e.key === "Escape") {
    if (s.completion) {
      c.setCompletionState(null);
      return used();
    }
    if (s.transfer) {
      c.closeTransfer();
      return used();
    }
    if (s.keypadCallId) {
      c.toggleKeypad(s.keypadCallId);
      return used();
    }
    if (s.notice) {
      c.dismissNotice();
      return used();
    }
    return false;
  }
  if (mod && !e.shiftKey) {
    const k = e.key.toLowerCase();
    const call = activeCall(s);
    if (k === "t") {
      if (call) c.openTransfer(call.id);
      return used();
    }
    if (k === "h" && call && !s.transfer) {
      void c.toggleHold(call.id);
      return used();
    }
    if (k === "m" && call && !s.transfer) {
      void c.toggleMute(call.id);
      return used();
    }
    return false;
  }
  if (e.ctrlKey || e.metaKey || e.altKey || s.transfer) return false;
  if (DIGIT.test(e.key) && !isEditable(e.target)) {
    const call = activeCall(s);
    if (call?.state === "Connected") {
      void c.dtmf(call.id, e.key);
      return used();
    }
    if (s.view === "calls") {
      c.pressKey(e.key);
      return used();
    }
  }
  if (e.key === "Enter" && s.view === "calls" && s.address.trim() && (e.target === document.body || e.target === null)) {
    void c.call();
    return used();
  }
  return false;
}

/** Keeps Tab inside an open modal dialog. */
export function trapFocus(e: KeyboardEvent, root: ParentNode): void {
  if (e.key !== "Tab") return;
  const dialog = root.querySelector<HTMLElement>("[role=dialog][aria-modal=true]");
  if (!dialog) return;
  const items = Array.from(
    dialog.querySelectorAll<HTMLElement>("button:not([disabled]), input:not([disabled]), select:not([disabled]), [tabindex]:not([tabindex='-1'])"),
  ).filter((x) => !x.closest("[hidden]"));
  const first = items[0];
  const last = items[items.length - 1];
  if (!first || !last) return;
  const active = document.activeElement;
  if (e.shiftKey && (active === first || !dialog.contains(active))) {
    e.preventDefault();
    last.focus();
  } else if (!e.shiftKey && (active === last || !dialog.contains(active))) {
    e.preventDefault();
    first.focus();
  }
}
