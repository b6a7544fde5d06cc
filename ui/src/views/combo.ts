// An address field with a completion listbox (ARIA combobox pattern).
import { html, nothing } from "lit-html";
import type { Suggestion } from "../address";
import type { State } from "../store";

export interface ComboProps {
  field: string;
  testid: string;
  label: string;
  value: string;
  suggestions: Suggestion[];
  state: State;
  setCompletion: (c: State["completion"]) => void;
  onInput: (value: string) => void;
  onEnter: () => void;
  autofocus?: boolean;
  placeholder?: string;
}

export function combo(p: ComboProps) {
  const open = p.state.completion?.field === p.field && p.suggestions.length > 0;
  const index = open ? (p.state.completion?.index ?? -1) : -1;
  const listId = `${p.field}-list`;
  const choose = (s: Suggestion) => {
    p.onInput(s.value);
    p.setCompletion(null);
  };
  const keydown = (e: KeyboardEvent) => {
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      if (!p.suggestions.length) return;
      e.preventDefault();
      const n = p.suggestions.length;
      const next = e.key === "ArrowDown" ? (index + 1) % n : (index - 1 + n) % n;
      p.setCompletion({ field: p.field, index: next });
    } else if (e.key === "Enter") {
      e.preventDefault();
      const chosen = index >= 0 ? p.suggestions[index] : undefined;
      if (chosen) choose(chosen);
      else {
        p.setCompletion(null);
        p.onEnter();
      }
    } else if (e.key === "Escape" && open) {
      e.stopPropagation();
      p.setCompletion(null);
    }
  };
  return html`<div class="combo">
    <input
      type="text"
      class="input"
      data-testid=${p.testid}
      id=${p.field}
      role="combobox"
      autocomplete="off"
      spellcheck="false"
      aria-label=${p.label}
      aria-autocomplete="list"
      aria-expanded=${open ? "true" : "false"}
      aria-controls=${listId}
      aria-activedescendant=${index >= 0 ? `${listId}-${index}` : nothing}
      placeholder=${p.placeholder ?? p.label}
      .value=${p.value}
      ?autofocus=${p.autofocus ?? false}
      @input=${(e: Event) => {
        p.onInput((e.target as HTMLInputElement).value);
        p.setCompletion({ field: p.field, index: -1 });
      }}
      @keydown=${keydown}
      @blur=${() => open && p.setCompletion(null)}
    />
    <ul class="listbox" role="listbox" id=${listId} ?hidden=${!open} aria-label=${p.label}>
      ${open
        ? p.suggestions.map(
            (s, i) =>
              html`<li
                role="option"
                id=${`${listId}-${i}`}
                class="option"
                data-testid="completion-option"
                data-value=${s.value}
                aria-selected=${i === index ? "true" : "false"}
                @mousedown=${(e: Event) => {
                  e.preventDefault();
                  choose(s);
                }}
              >
                <span class="option-label">${s.label}</span><span class="option-detail">${s.detail}</span>
              </li>`,
          )
        : nothing}
    </ul>
  </div>`;
}
