// Bytes as the RFCs write them.
import { Buffer } from "node:buffer";

/** "81 05 48" → bytes: frames in tests are written as the RFC writes them. */
export function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ""), "hex");
}
