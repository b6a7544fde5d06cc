// Inline SVG icons (no remote content). Decorative: the buttons carry the names.
import { svg, type TemplateResult } from "lit-html";

const wrap = (body: TemplateResult) =>
  svg`<svg class="icon" viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" focusable="false" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round">${body}</svg>`;

export const icons = {
  phone: wrap(svg`<path d="M5 4h4l2 5-2.5 1.5a11 11 0 0 0 5 5L15 13l5 2v4a2 2 0 0 1-2 2A16 16 0 0 1 3 6a2 2 0 0 1 2-2"/>`),
  hangUp: wrap(svg`<path d="M3 14.5c5-4.7 13-4.7 18 0l-2.3 2.6-3.4-1.6.2-2.6a10 10 0 0 0-7 0l.2 2.6-3.4 1.6z"/>`),
  history: wrap(svg`<path d="M3 12a9 9 0 1 0 3-6.7L3 8"/><path d="M3 3v5h5"/><path d="M12 7v5l3 2"/>`),
  voicemail: wrap(svg`<circle cx="6.5" cy="12" r="3.5"/><circle cx="17.5" cy="12" r="3.5"/><path d="M6.5 15.5h11"/>`),
  settings: wrap(svg`<circle cx="12" cy="12" r="3"/><path d="M19.4 15a1.7 1.7 0 0 0 .3 1.8l.1.1a2 2 0 1 1-2.8 2.8l-.1-.1a1.7 1.7 0 0 0-1.8-.3 1.7 1.7 0 0 0-1 1.5V21a2 2 0 1 1-4 0v-.1a1.7 1.7 0 0 0-1.1-1.5 1.7 1.7 0 0 0-1.8.3l-.1.1a2 2 0 1 1-2.8-2.8l.1-.1a1.7 1.7 0 0 0 .3-1.8 1.7 1.7 0 0 0-1.5-1H3a2 2 0 1 1 0-4h.1a1.7 1.7 0 0 0 1.5-1.1 1.7 1.7 0 0 0-.3-1.8l-.1-.1a2 2 0 1 1 2.8-2.8l.1.1a1.7 1.7 0 0 0 1.8.3H9a1.7 1.7 0 0 0 1-1.5V3a2 2 0 1 1 4 0v.1a1.7 1.7 0 0 0 1 1.5 1.7 1.7 0 0 0 1.8-.3l.1-.1a2 2 0 1 1 2.8 2.8l-.1.1a1.7 1.7 0 0 0-.3 1.8V9a1.7 1.7 0 0 0 1.5 1H21a2 2 0 1 1 0 4h-.1a1.7 1.7 0 0 0-1.5 1z"/>`),
  mic: wrap(svg`<rect x="9" y="3" width="6" height="11" rx="3"/><path d="M5 11a7 7 0 0 0 14 0M12 18v3"/>`),
  micOff: wrap(svg`<path d="M3 3l18 18"/><path d="M9 9v2a3 3 0 0 0 5.1 2.1M15 10V6a3 3 0 0 0-5.7-1.3"/><path d="M5 11a7 7 0 0 0 11.5 5.4M19 11a7 7 0 0 1-.6 2.8M12 18v3"/>`),
  pause: wrap(svg`<path d="M9 5v14M15 5v14"/>`),
  play: wrap(svg`<path d="M7 5l12 7-12 7z"/>`),
  stop: wrap(svg`<rect x="6" y="6" width="12" height="12" rx="1"/>`),
  keypad: wrap(svg`<circle cx="6" cy="5" r="1"/><circle cx="12" cy="5" r="1"/><circle cx="18" cy="5" r="1"/><circle cx="6" cy="11" r="1"/><circle cx="12" cy="11" r="1"/><circle cx="18" cy="11" r="1"/><circle cx="6" cy="17" r="1"/><circle cx="12" cy="17" r="1"/><circle cx="18" cy="17" r="1"/>`),
  transfer: wrap(svg`<path d="M4 8h13l-3-3M20 16H7l3 3"/>`),
  close: wrap(svg`<path d="M6 6l12 12M18 6L6 18"/>`),
  check: wrap(svg`<path d="M5 12l5 5 9-10"/>`),
  trash: wrap(svg`<path d="M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13"/>`),
  backspace: wrap(svg`<path d="M21 5H8l-5 7 5 7h13z"/><path d="M12 9l6 6M18 9l-6 6"/>`),
  incoming: wrap(svg`<path d="M17 7L7 17M7 9v8h8"/>`),
  outgoing: wrap(svg`<path d="M7 17L17 7M9 7h8v8"/>`),
  warning: wrap(svg`<path d="M12 3l10 18H2z"/><path d="M12 10v5M12 18v.01"/>`),
  refresh: wrap(svg`<path d="M20 11a8 8 0 1 0-2.3 5.7"/><path d="M20 4v7h-7"/>`),
};
