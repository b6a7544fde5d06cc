import { html, nothing } from "lit-html";
import type { AccountInput, AudioDeviceInfo, Language, MediaProfile, Theme, Transport } from "../bindings";
import type { Controller } from "../controller";
import { languageNames, type Translator } from "../i18n";
import type { State } from "../store";
import { levelMeter } from "./calls";
import { icons } from "./icons";

/** The media profiles, most protected first: the order calls try them in. */
export const MEDIA_PROFILES: readonly MediaProfile[] = ["webrtc", "sdes", "rtp"];

/** The transports to the server, in the order the picker offers them. */
export const TRANSPORTS: readonly Transport[] = ["udp", "tcp", "tls", "ws", "wss"];

/**
 * Reads the account form; an empty secret or TURN password keeps the stored one. `tlsCa` is
 * the text of the authority file the user chose, if any (reading a file is asynchronous: see
 * {@link chosenAuthority}).
 */
export function readAccount(form: HTMLFormElement, tlsCa: string | null = null): AccountInput {
  const f = new FormData(form);
  const get = (k: string) => String(f.get(k) ?? "").trim();
  const secret = String(f.get("secret") ?? "");
  const kind = get("credential") === "password" ? "password" : "token";
  return {
    server: get("server"),
    domain: get("domain"),
    transport: (TRANSPORTS.find((t) => t === get("transport")) ?? "udp") as Transport,
    user: get("user"),
    displayName: get("displayName") || null,
    secret: secret ? (kind === "password" ? { kind, password: secret } : { kind, token: secret }) : null,
    mediaProfiles: MEDIA_PROFILES.filter((p) => f.getAll("media").includes(p)),
    tlsCa: tlsCa ?? (f.get("tlsCaRemove") !== null ? "" : null),
    turnServer: get("turnServer") || null,
    turnUser: get("turnUser") || null,
    turnPassword: String(f.get("turnPassword") ?? "") || null,
    relayOnly: f.get("relayOnly") !== null,
  };
}

/** The text of the authority file chosen in the form, or null when none was chosen. */
export async function chosenAuthority(form: HTMLFormElement): Promise<string | null> {
  const input = form.elements.namedItem("tlsCa");
  const file = input instanceof HTMLInputElement ? input.files?.[0] : undefined;
  return file ? await file.text() : null;
}

function deviceOptions(t: Translator, devices: AudioDeviceInfo[], selected: string | null) {
  return devices.map(
    (d) => html`<option value=${d.id} ?selected=${d.id === selected}>${d.isSystemDefault ? t("settings.defaultDevice", { name: d.name }) : d.name}</option>`,
  );
}

export function settingsView(s: State, c: Controller, t: Translator) {
  const acc = s.settings?.account ?? null;
  const prefs = s.settings?.preferences ?? { language: "system" as Language, theme: "system" as Theme, ringOnlyTarget: false };
  const session = s.session;
  const exec = (cmd: Parameters<Controller["exec"]>[0]) => void c.exec(cmd);
  return html`<div class="page-stack settings">
    <section class="card page" aria-labelledby="account-title">
      <h2 id="account-title" class="section-title">${t("settings.account")}</h2>
      <p class="hint">
        ${session
          ? session.server === "demo"
            ? t("settings.accountDemo", { user: session.displayName ?? session.user })
            : t("settings.accountRemote", { user: session.user, domain: session.domain })
          : nothing}
      </p>
      <form class="form-grid" @submit=${(e: Event) => {
        e.preventDefault();
        const form = e.target as HTMLFormElement;
        void chosenAuthority(form)
          .then((pem) => c.saveAccount(readAccount(form, pem)))
          .then((ok) => {
            if (!ok) return;
            for (const name of ["secret", "turnPassword", "tlsCa"]) {
              const field = form.elements.namedItem(name);
              if (field instanceof HTMLInputElement) field.value = "";
            }
          });
      }}>
        <label class="field-label" for="settings-server">${t("settings.server")}</label>
        <input class="input" id="settings-server" name="server" data-testid="settings-server" required placeholder="sip.example.com:5060" .value=${acc?.server ?? ""} />
        <label class="field-label" for="settings-domain">${t("settings.domain")}</label>
        <input class="input" id="settings-domain" name="domain" data-testid="settings-domain" required .value=${acc?.domain ?? ""} />
        <label class="field-label" for="settings-transport">${t("settings.transport")}</label>
        <select class="input" id="settings-transport" name="transport" data-testid="settings-transport">
          ${TRANSPORTS.map((tr) => html`<option value=${tr} ?selected=${(acc?.transport ?? "udp") === tr}>${tr.toUpperCase()}</option>`)}
        </select>
        <label class="field-label" for="settings-user">${t("settings.user")}</label>
        <input class="input" id="settings-user" name="user" data-testid="settings-user" required autocomplete="username" .value=${acc?.user ?? ""} />
        <label class="field-label" for="settings-display-name">${t("settings.displayName")}</label>
        <input class="input" id="settings-display-name" name="displayName" data-testid="settings-display-name" .value=${acc?.displayName ?? ""} />
        <label class="field-label" for="settings-credential">${t("settings.credential")}</label>
        <select class="input" id="settings-credential" name="credential" data-testid="settings-credential">
          <option value="token" ?selected=${acc?.credential !== "password"}>${t("settings.credential.token")}</option>
          <option value="password" ?selected=${acc?.credential === "password"}>${t("settings.credential.password")}</option>
        </select>
        <label class="field-label" for="settings-secret">${t("settings.secret")}</label>
        <span class="field-with-hint">
          <input class="input" id="settings-secret" name="secret" type="password" autocomplete="current-password" data-testid="settings-secret" ?required=${!acc?.hasSecret} placeholder=${acc?.hasSecret ? t("settings.secretSaved") : ""} />
          ${acc?.hasSecret ? html`<span class="hint" data-testid="settings-secret-saved">${t("settings.secretSavedHint")}</span>` : nothing}
        </span>
        <span class="field-label" id="settings-media-label">${t("settings.media")}</span>
        <span class="field-with-hint">
          <span class="checks" role="group" aria-labelledby="settings-media-label">
            ${MEDIA_PROFILES.map(
              (p) => html`<label class="check"><input type="checkbox" name="media" value=${p} data-testid=${`settings-media-${p}`} .checked=${(acc?.mediaProfiles ?? MEDIA_PROFILES).includes(p)} /><span>${t(`settings.media.${p}`)}</span></label>`,
            )}
          </span>
          <span class="hint">${t("settings.mediaHint")}</span>
        </span>
        <label class="field-label" for="settings-tls-ca">${t("settings.tlsCa")}</label>
        <span class="field-with-hint">
          <span class="row">
            <input class="input" type="file" id="settings-tls-ca" name="tlsCa" accept=".pem,.crt,.cer,application/x-pem-file" data-testid="settings-tls-ca" />
            ${acc?.hasTlsCa ? html`<label class="check"><input type="checkbox" name="tlsCaRemove" data-testid="settings-tls-ca-remove" /><span>${t("settings.tlsCaRemove")}</span></label>` : nothing}
          </span>
          <span class="hint" data-testid="settings-tls-ca-state">${acc?.hasTlsCa ? t("settings.tlsCaSaved") : t("settings.tlsCaHint")}</span>
        </span>
        <label class="field-label" for="settings-turn-server">${t("settings.turnServer")}</label>
        <input class="input" id="settings-turn-server" name="turnServer" data-testid="settings-turn-server" placeholder="turn:turn.example.com:3478" .value=${acc?.turnServer ?? ""} />
        <label class="field-label" for="settings-turn-user">${t("settings.turnUser")}</label>
        <input class="input" id="settings-turn-user" name="turnUser" data-testid="settings-turn-user" autocomplete="off" placeholder=${t("settings.turnUserPlaceholder")} .value=${acc?.turnUser ?? ""} />
        <label class="field-label" for="settings-turn-password">${t("settings.turnPassword")}</label>
        <input class="input" id="settings-turn-password" name="turnPassword" type="password" autocomplete="new-password" data-testid="settings-turn-password" placeholder=${acc?.hasTurnPassword ? t("settings.secretSaved") : ""} />
        <span class="field-label"></span>
        <label class="check"><input type="checkbox" name="relayOnly" data-testid="settings-relay-only" .checked=${acc?.relayOnly ?? false} /><span>${t("settings.relayOnly")}</span></label>
        <div class="form-actions">
          <button type="button" class="btn" data-testid="settings-use-demo" ?disabled=${session?.server === "demo"} @click=${() => void c.useDemo()}>${t("settings.useDemo")}</button>
          <button type="submit" class="btn primary" data-testid="settings-save-account">${t("settings.saveAccount")}</button>
        </div>
      </form>
    </section>

    <section class="card page" aria-labelledby="audio-title">
      <h2 id="audio-title" class="section-title">${t("settings.audio")}</h2>
      <div class="form-grid">
        <label class="field-label" for="settings-mic">${t("settings.microphone")}</label>
        <select class="input" id="settings-mic" data-testid="settings-mic" @change=${(e: Event) => exec({ command: "selectMicrophone", deviceId: (e.target as HTMLSelectElement).value })}>
          ${deviceOptions(t, s.microphones, s.selectedMicrophone)}
        </select>
        <span class="field-label">${t("settings.levelMeter")}</span>
        <span data-testid="settings-level-meter" class="meter-wrap">${levelMeter(s.micLevel, t("settings.levelMeter"))}</span>
        <label class="field-label" for="settings-speaker">${t("settings.speaker")}</label>
        <span class="row">
          <select class="input" id="settings-speaker" data-testid="settings-speaker" @change=${(e: Event) => exec({ command: "selectSpeaker", deviceId: (e.target as HTMLSelectElement).value })}>
            ${deviceOptions(t, s.speakers, s.selectedSpeaker)}
          </select>
          <button type="button" class="btn" data-testid="settings-test-tone" @click=${() => exec({ command: "playSpeakerTestTone" })}>${icons.play}<span>${t("settings.testTone")}</span></button>
        </span>
        <label class="field-label" for="settings-ringer">${t("settings.ringer")}</label>
        <select class="input" id="settings-ringer" data-testid="settings-ringer" @change=${(e: Event) => {
          const v = (e.target as HTMLSelectElement).value;
          exec(v ? { command: "selectRinger", deviceId: v } : { command: "selectRinger" });
        }}>
          <option value="" ?selected=${!s.selectedRinger}>${t("settings.ringerSameAsSpeaker")}</option>
          ${deviceOptions(t, s.speakers, s.selectedRinger)}
        </select>
        <span class="field-label">${t("settings.ringtone")}</span>
        <span class="row">
          <label class="btn file-btn"><span>${t("settings.ringtoneFile")}</span>
            <input type="file" class="visually-hidden" accept=".wav,.flac,.mp3,.ogg,audio/*" data-testid="settings-ringtone-file" @change=${(e: Event) => {
              const input = e.target as HTMLInputElement;
              const file = input.files?.[0];
              if (file) void c.saveRingtone(file).finally(() => (input.value = ""));
            }} />
          </label>
          <button type="button" class="btn" data-testid="settings-ringtone-builtin" @click=${() => exec({ command: "setRingtone" })}>${t("settings.ringtoneBuiltIn")}</button>
        </span>
        <span class="field-label">${t("settings.audio")}</span>
        <span class="checks">
          <label class="check"><input type="checkbox" data-testid="settings-echo" .checked=${s.audioProcessing?.echoCancellation ?? true} @change=${(e: Event) => exec({ command: "setAudioProcessing", echoCancellation: (e.target as HTMLInputElement).checked })} /><span>${t("settings.echo")}</span></label>
          <label class="check"><input type="checkbox" data-testid="settings-noise" .checked=${s.audioProcessing?.noiseSuppression ?? true} @change=${(e: Event) => exec({ command: "setAudioProcessing", noiseSuppression: (e.target as HTMLInputElement).checked })} /><span>${t("settings.noise")}</span></label>
        </span>
      </div>
    </section>

    <section class="card page" aria-labelledby="calls-settings-title">
      <h2 id="calls-settings-title" class="section-title">${t("settings.calls")}</h2>
      <div class="checks">
        <label class="check"><input type="checkbox" data-testid="settings-dnd" .checked=${s.dnd} @change=${(e: Event) => exec({ command: "setDoNotDisturb", enabled: (e.target as HTMLInputElement).checked })} /><span>${t("settings.dnd")}</span></label>
        <label class="check"><input type="checkbox" data-testid="settings-ring-only" .checked=${prefs.ringOnlyTarget} @change=${(e: Event) => void c.savePreferences({ ringOnlyTarget: (e.target as HTMLInputElement).checked })} /><span>${t("settings.ringOnly")}</span></label>
      </div>
    </section>

    <section class="card page" aria-labelledby="appearance-title">
      <h2 id="appearance-title" class="section-title">${t("settings.appearance")}</h2>
      <div class="form-grid">
        <label class="field-label" for="settings-language">${t("settings.language")}</label>
        <select class="input" id="settings-language" data-testid="settings-language" @change=${(e: Event) => void c.savePreferences({ language: (e.target as HTMLSelectElement).value as Language })}>
          <option value="system" ?selected=${prefs.language === "system"}>${t("settings.language.system")}</option>
          ${(["en", "ko", "zh"] as const).map((l) => html`<option value=${l} lang=${l} ?selected=${prefs.language === l}>${languageNames[l]}</option>`)}
        </select>
        <label class="field-label" for="settings-theme">${t("settings.theme")}</label>
        <select class="input" id="settings-theme" data-testid="settings-theme" @change=${(e: Event) => void c.savePreferences({ theme: (e.target as HTMLSelectElement).value as Theme })}>
          ${(["system", "light", "dark"] as const).map((th) => html`<option value=${th} ?selected=${prefs.theme === th}>${t(`settings.theme.${th}`)}</option>`)}
        </select>
      </div>
    </section>
  </div>`;
}
