// The words for a failed transfer, from its SIP status and sub-code.

import type { TransferError } from "./bindings";
import type { MessageKey } from "./i18n";

/** hookflash_core::transfer::transfer_sub_code. */
export const TransferSubCode = {
  REFER_REJECTED: 2000,
  TARGET_FAILED: 2001,
  NO_FINAL_ANSWER: 2002,
  TIMEOUT: 2003,
  CALL_ENDED: 2004,
} as const;

export function transferFailureKey(error: TransferError | null | undefined): MessageKey {
  if (!error) return "transfer.fail.generic";
  const { code, subCode } = error;
  if (code === 408 && subCode === TransferSubCode.TIMEOUT) return "transfer.fail.timedOut";
  if (subCode === TransferSubCode.CALL_ENDED) return "transfer.fail.callEnded";
  if (code === 486 || code === 600) return "transfer.fail.busy";
  if (code === 408 || code === 480 || code === 487) return "transfer.fail.noAnswer";
  if (code === 404 || code === 484 || code === 604) return "transfer.fail.unknown";
  if (code === 403 || code === 603) return "transfer.fail.refused";
  return "transfer.fail.generic";
}
