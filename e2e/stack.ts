// PLACEHOLDER: being written by the lead engineer. Signature is final.
import type { Domain } from '@citypulse/contracts';

export interface StackOptions {
  /** Run simulated devices too (real MQTT, real credentials). */
  readonly simulate?: { readonly provinces: readonly string[]; readonly domains?: readonly Domain[]; readonly devicesPerProvince: number; readonly intervalMs: number };
}

export interface Stack {
  /** http://127.0.0.1:PORT — REST under /api/v1, socket.io, and the built dashboard at / */
  readonly apiUrl: string;
  readonly mqttUrl: string;
  readonly influx: { readonly url: string; readonly database: string };
  readonly dataDir: string;
  /** An admin operator created for the test. */
  readonly operator: { readonly username: string; readonly password: string };
  stop(): Promise<void>;
}

export declare function startStack(options?: StackOptions): Promise<Stack>;
