// SPDX-License-Identifier: Apache-2.0
// The client side of the daemon's socket: JSON-RPC 2.0, one message per line, typed by the
// contract's method map (call('flows.list', params) returns a FlowsListResult). Daemon
// errors become CliErrors with the exit code the CLI promises (docs/cli.md).
import net from 'node:net';
import { createRequire } from 'node:module';
import type * as JsonRpc from 'json-rpc-2.0';
import { ERRORS } from '../../daemon/src/contract/errors.js';
import type { MethodName, Notifications, ParamsOf, ResultOf } from '../../daemon/src/contract/methods.js';
import { CliError, EXIT } from './exit.js';

// json-rpc-2.0 is CommonJS. Imported from an ES module, Node first runs its CommonJS
// module lexer over it (WebAssembly, compiled at the first such import): about 60 ms of every
// ebpfmonctl start on this VM (`--version` took 201 ms, bench/query); require() loads it
// in about 10 ms.
const { JSONRPCClient, JSONRPCErrorException, JSONRPCServer, JSONRPCServerAndClient } = createRequire(import.meta.url)('json-rpc-2.0') as typeof JsonRpc;
type JSONRPCResponse = JsonRpc.JSONRPCResponse;

export const DEFAULT_SOCKET = '/run/ebpfmon/ebpfmon.sock';

/** The daemon went away mid-conversation (stopped, restarted, killed). */
export class ConnectionLost extends CliError {
  readonly at = new Date();
  constructor(readonly reason: string) {
    super(`lost the connection to the daemon (${reason})`, EXIT.UNREACHABLE);
  }
}

export class DaemonClient {
  private readonly rpc: JsonRpc.JSONRPCServerAndClient;
  /** Chunks of a line not yet complete. */
  private pending: string[] = [];

  private constructor(private readonly socket: net.Socket, readonly socketPath: string) {
    this.rpc = new JSONRPCServerAndClient(
      new JSONRPCServer(),
      new JSONRPCClient((req) => {
        socket.write(`${JSON.stringify(req)}\n`);
      }),
    );
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      // A long answer (flows.list of 100,000 flows: tens of MB) arrives in many chunks:
      // chunks are kept in a list and joined once its line is complete, never rescanned.
      let nl = chunk.indexOf('\n');
      if (nl < 0) {
        this.pending.push(chunk);
        return;
      }
      this.pending.push(chunk);
      let text = this.pending.join('');
      this.pending = [];
      nl += text.length - chunk.length;
      while (nl >= 0) {
        const line = text.slice(0, nl);
        text = text.slice(nl + 1);
        nl = text.indexOf('\n');
        if (!line.trim()) continue;
        let msg: unknown;
        try {
          msg = JSON.parse(line);
        } catch {
          continue;
        }
        // A response without an id is the daemon refusing the connection (too many clients).
        const m = msg as Partial<JSONRPCResponse> & { method?: string; params?: unknown };
        if (m.id === null && m.error) {
          this.fatal = new CliError(`daemon refused the connection: ${m.error.message}`, EXIT.DAEMON);
          socket.destroy();
          continue;
        }
        // Notifications go straight to their handler: through the library each one costs a
        // promise chain (about 30 us, more than the daemon spends making it).
        if (m.method !== undefined && !('id' in m)) {
          this.notificationHandlers.get(m.method)?.(m.params);
          continue;
        }
        void this.rpc.receiveAndSend(msg as never);
      }
      if (text) this.pending.push(text);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => (this.lostReason = err.code ?? err.message));
    socket.on('close', () => {
      if (!this.closing && !this.fatal) this.lost = new ConnectionLost(this.lostReason);
      this.rpc.rejectAllPendingRequests(this.fatal?.message ?? 'the daemon closed the connection');
    });
  }

  fatal: CliError | null = null;
  /** Set when the daemon closed the connection (or died) without the client asking. */
  lost: ConnectionLost | null = null;
  private lostReason = 'connection closed';
  private closing = false;

  static connect(socketPath: string): Promise<DaemonClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(socketPath);
      s.once('connect', () => resolve(new DaemonClient(s, socketPath)));
      s.once('error', (err: NodeJS.ErrnoException) => {
        const how = 'start it with `sudo systemctl start ebpfmon` (or `sudo npm start` in a source tree), or point --socket / EBPFMON_SOCKET at its socket';
        if (err.code === 'EACCES') reject(new CliError(`cannot open ${socketPath}: permission denied`, EXIT.PERMISSION));
        else reject(new CliError(`cannot reach the ebpfmon daemon at ${socketPath} (${err.code ?? err.message}): ${how}`, EXIT.UNREACHABLE));
      });
    });
  }

  async call<M extends MethodName>(method: M, ...params: undefined extends ParamsOf<M> ? [ParamsOf<M>?] : [ParamsOf<M>]): Promise<ResultOf<M>> {
    // A request written to a closed socket would never be answered.
    if (this.fatal) throw this.fatal;
    if (this.lost) throw this.lost;
    try {
      return (await this.rpc.request(method, params[0])) as ResultOf<M>;
    } catch (err) {
      if (this.fatal) throw this.fatal;
      if (this.lost) throw this.lost;
      if (err instanceof JSONRPCErrorException) {
        const code = err.code === ERRORS.PermissionDenied.code ? EXIT.PERMISSION : err.code === ERRORS.InvalidParams.code ? EXIT.USAGE : EXIT.DAEMON;
        throw new CliError(err.message, code);
      }
      throw new CliError(`daemon request ${method} failed: ${(err as Error).message}`, EXIT.DAEMON);
    }
  }

  private readonly notificationHandlers = new Map<string, (params: unknown) => void>();

  /** Handles server notifications (`events.event`, `events.batch`, `events.lost`); one handler per method. */
  onNotification<N extends keyof Notifications>(method: N, fn: (params: Notifications[N]) => void): void {
    this.notificationHandlers.set(method, fn as (params: unknown) => void);
  }

  /** Runs `fn` when the connection ends; `lost` says whether the client asked for it. */
  onClose(fn: () => void): void {
    this.socket.once('close', fn);
  }

  close(): void {
    this.closing = true;
    this.socket.end();
    this.socket.destroy();
  }
}
