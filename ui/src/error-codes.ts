// Every ErrorCode the backend reports, as a list the tests can walk, and its catalogue key.

import type { ErrorCode } from "./bindings";
import { catalogues, type MessageKey } from "./i18n";

// `satisfies` makes the compiler reject this table when a code is added to (or removed
// from) the generated ErrorCode and not here.
const KNOWN = {
  "call.invalid_state": true,
  "call.not_found": true,
  "call.protocol": true,
  "call.hold_failed": true,
  "call.resume_failed": true,
  "target.invalid": true,
  "credential.invalid": true,
  "agent.not_connected": true,
  "command.malformed": true,
  "dtmf.invalid": true,
  "media.failed": true,
  "media.incompatible": true,
  "transport.failed": true,
  "agent.shut_down": true,
  "device.unavailable": true,
  "device.io": true,
  "device.format": true,
  "device.spec": true,
  "device.closed": true,
  "device.lost.microphone": true,
  "device.lost.speaker": true,
  "device.lost.ringer": true,
  "device.none_available": true,
  "settings.failed": true,
  "voicemail.unavailable": true,
  "voicemail.failed": true,
} as const satisfies Record<ErrorCode, true>;

export const ERROR_CODES = Object.keys(KNOWN) as ErrorCode[];

/** The catalogue key for an error code; every `ErrorCode` has one (checked by the compiler). */
export function errorKey(code: ErrorCode): MessageKey {
  const key: MessageKey = `error.${code}`;
  // A code newer than this build of the UI still gets words.
  return key in catalogues.en ? key : "error.unknown";
}
