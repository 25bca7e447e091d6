// SPDX-License-Identifier: Apache-2.0
// ebpfmon in the GNOME Shell panel (GNOME 43/44, the legacy `imports` module style those
// versions load). Reads the daemon's D-Bus API on the system bus, org.ebpfmon1
// (docs/dbus.md), and never polls it: Subscribe once, then the daemon's signals drive
// everything, at most once a second (RatesChanged, BandwidthChanged) - a panel applet must
// cost nothing while the machine is quiet.
//   - the indicator: send and receive rates of what this user may see (TxBytesPerSec,
//     RxBytesPerSec once, then RatesChanged);
//   - the menu: the top five talkers (BandwidthChanged; GetTopTalkers once), each with its
//     rate and its busiest place (`places`);
//   - a notification the first time a program talks to the network in this session
//     (ProcessStarted; keyed by executable, else by command name);
//   - "Open map": `ebpfmonctl ui --open`, kept running while the shell runs; a second click
//     opens the same page again.
// The names below are those of daemon/src/contract/dbus.ts
// (test/unit/packaging/gnome-shell.test.ts keeps them in step).
'use strict';

const { Gio, GLib, GObject, St, Clutter } = imports.gi;
const Main = imports.ui.main;
const PanelMenu = imports.ui.panelMenu;
const PopupMenu = imports.ui.popupMenu;

const BUS_NAME = 'org.ebpfmon1';
const MANAGER_PATH = '/org/ebpfmon1';
const MANAGER_IFACE = 'org.ebpfmon1.Manager';
const METHOD = { GetTopTalkers: 'GetTopTalkers', Subscribe: 'Subscribe', Unsubscribe: 'Unsubscribe' };
const SIGNAL = { ProcessStarted: 'ProcessStarted', BandwidthChanged: 'BandwidthChanged', RatesChanged: 'RatesChanged' };
const PROPERTY = { TxBytesPerSec: 'TxBytesPerSec', RxBytesPerSec: 'RxBytesPerSec', SeesAllUsers: 'SeesAllUsers' };
const TOP = 5;
/** Programs notified about, at most (a machine starting thousands of programs must not
 * grow the shell's memory). */
const MAX_SEEN = 4096;
const CTL = 'ebpfmonctl';

function units(n) {
  if (n < 1024) return `${Math.round(n)} B`;
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${u[i]}`;
}
const rate = (n) => `${units(n)}/s`;

/** Where a place is, in a few words: "Reykjavík, IS", "DE", "private". */
function placeText(p) {
  if (!p) return '';
  const parts = [p.city, p.country].filter((x) => typeof x === 'string' && x !== '');
  return parts.length ? parts.join(', ') : p.label ?? '';
}

/** a{sv} (or aa{sv}) as plain JS values; 64-bit counts become numbers. */
const plain = (v) => v.recursiveUnpack();

var EbpfmonIndicator = GObject.registerClass(
class EbpfmonIndicator extends PanelMenu.Button {
  _init() {
    super._init(0.0, 'ebpfmon');
    this._label = new St.Label({ text: 'ebpfmon', y_align: Clutter.ActorAlign.CENTER, style_class: 'ebpfmon-rates' });
    this.add_child(this._label);
    /** What the indicator shows, as data (tests read it through the shell). */
    this.state = { connected: false, tx: 0, rx: 0, top: [], notified: [], signals: 0, error: null };
    this._seen = new Set();
    this._proxy = null;
    this._signalId = 0;
    this._ui = null;
    this._uiUrl = null;
    this._cancellable = new Gio.Cancellable();

    this._status = new PopupMenu.PopupMenuItem('ebpfmon: not connected', { reactive: false });
    this.menu.addMenuItem(this._status);
    this._topSection = new PopupMenu.PopupMenuSection();
    this.menu.addMenuItem(this._topSection);
    this.menu.addMenuItem(new PopupMenu.PopupSeparatorMenuItem());
    const open = new PopupMenu.PopupMenuItem('Open map');
    open.connect('activate', () => this.openMap());
    this.menu.addMenuItem(open);

    // The daemon may start after the shell, or restart: subscribe each time it appears.
    this._watch = Gio.bus_watch_name(Gio.BusType.SYSTEM, BUS_NAME, Gio.BusNameWatcherFlags.NONE,
      () => this._connect(), () => this._disconnected());
  }

  _connect() {
    Gio.DBusProxy.new_for_bus(Gio.BusType.SYSTEM,
      Gio.DBusProxyFlags.DO_NOT_LOAD_PROPERTIES | Gio.DBusProxyFlags.DO_NOT_AUTO_START,
      null, BUS_NAME, MANAGER_PATH, MANAGER_IFACE, this._cancellable, (_o, res) => {
        try {
          this._setProxy(Gio.DBusProxy.new_for_bus_finish(res));
        } catch (e) {
          if (!e.matches(Gio.IOErrorEnum, Gio.IOErrorEnum.CANCELLED)) this._fail(e);
        }
      });
  }

  _setProxy(proxy) {
    this._dropProxy();
    this._proxy = proxy;
    // Signals are unicast to subscribers (docs/dbus.md); GDBusProxy delivers those from
    // the name's owner only.
    this._signalId = proxy.connect('g-signal', (_p, _sender, name, params) => this._onSignal(name, params));
    this._call(METHOD.Subscribe, null, () => {
      this.state.connected = true;
      this.state.error = null;
      this._getRates();
      this._call(METHOD.GetTopTalkers, new GLib.Variant('(u)', [TOP]), (r) => this._setTop(plain(r)[0]));
    });
  }

  _getRates() {
    const get = (prop, done) => this._proxy.get_connection().call(BUS_NAME, MANAGER_PATH, 'org.freedesktop.DBus.Properties', 'Get',
      new GLib.Variant('(ss)', [MANAGER_IFACE, prop]), null, Gio.DBusCallFlags.NONE, 5000, this._cancellable, (c, res) => {
        try {
          done(plain(c.call_finish(res))[0]);
        } catch (e) {
          this._fail(e);
        }
      });
    get(PROPERTY.SeesAllUsers, (v) => (this.state.seesAll = v));
    get(PROPERTY.TxBytesPerSec, (v) => this._setRates(v, this.state.rx));
    get(PROPERTY.RxBytesPerSec, (v) => this._setRates(this.state.tx, v));
  }

  _call(method, params, done) {
    const proxy = this._proxy;
    proxy.call(method, params, Gio.DBusCallFlags.NONE, 5000, this._cancellable, (_p, res) => {
      try {
        done(proxy.call_finish(res));
      } catch (e) {
        this._fail(e);
      }
    });
  }

  _onSignal(name, params) {
    this.state.signals++;
    const args = plain(params);
    if (name === SIGNAL.RatesChanged) this._setRates(args[0], args[1]);
    else if (name === SIGNAL.BandwidthChanged) this._setTop(args[0]);
    else if (name === SIGNAL.ProcessStarted) this._started(args[0], args[1], args[2], args[3] ?? {});
  }

  _setRates(tx, rx) {
    this.state.tx = Number(tx);
    this.state.rx = Number(rx);
    this._label.text = `\u2191 ${rate(this.state.tx)} \u2193 ${rate(this.state.rx)}`;
  }

  _setTop(list) {
    this.state.top = list.slice(0, TOP).map((t) => ({
      pid: t.pid ?? null, comm: t.comm ?? null, bytesPerSec: Number(t.bytesPerSec ?? 0),
      txBytesPerSec: Number(t.txBytesPerSec ?? 0), rxBytesPerSec: Number(t.rxBytesPerSec ?? 0),
      where: placeText((t.places ?? [])[0]),
    }));
    this._status.label.text = this.state.top.length ? 'Top talkers' : 'No traffic right now';
    this._topSection.removeAll();
    for (const t of this.state.top) {
      const text = `${t.comm ?? '(unknown)'} [${t.pid ?? '-'}]   ${rate(t.bytesPerSec)}${t.where ? `   \u2192 ${t.where}` : ''}`;
      this._topSection.addMenuItem(new PopupMenu.PopupMenuItem(text, { reactive: false }));
    }
  }

  _started(pid, comm, uid, details) {
    const key = details.exe ?? comm;
    if (this._seen.has(key) || this._seen.size >= MAX_SEEN) return;
    this._seen.add(key);
    const to = details.remoteAddr ? ` to ${details.remoteAddr}${details.remotePort ? `:${details.remotePort}` : ''}` : '';
    const where = placeText(details.remoteGeo);
    const body = `${details.exe ?? comm} (pid ${pid}) talks to the network${to}${where ? ` (${where})` : ''}`;
    this.state.notified.push({ pid, comm, key, body });
    if (this.state.notified.length > TOP * 4) this.state.notified.shift();
    Main.notify(`${comm} uses the network`, body);
  }

  _fail(e) {
    if (e.matches?.(Gio.IOErrorEnum, Gio.IOErrorEnum.CANCELLED)) return;
    this.state.error = e.message;
    this._status.label.text = `ebpfmon: ${e.message}`;
  }

  _dropProxy() {
    if (this._proxy && this._signalId) this._proxy.disconnect(this._signalId);
    this._proxy = null;
    this._signalId = 0;
  }

  _disconnected() {
    this._dropProxy();
    this.state.connected = false;
    this._label.text = 'ebpfmon';
    this._status.label.text = 'ebpfmon: the daemon is not running';
    this._topSection.removeAll();
  }

  /** `ebpfmonctl ui --open --json`: one page server per session; a second click opens the
   * page it printed again. */
  openMap() {
    if (this._ui && this._uiUrl) {
      Gio.AppInfo.launch_default_for_uri(this._uiUrl, null);
      return;
    }
    if (this._ui) return; // starting
    try {
      this._ui = Gio.Subprocess.new([CTL, 'ui', '--open', '--json'], Gio.SubprocessFlags.STDOUT_PIPE);
    } catch (e) {
      Main.notify('ebpfmon', `cannot start ${CTL} ui: ${e.message}`);
      return;
    }
    const ui = this._ui;
    const out = new Gio.DataInputStream({ base_stream: ui.get_stdout_pipe() });
    out.read_line_async(GLib.PRIORITY_DEFAULT, this._cancellable, (_s, res) => {
      try {
        const [line] = out.read_line_finish_utf8(res);
        if (line) this._uiUrl = JSON.parse(line).urls[0] ?? null;
      } catch (e) {
        this._fail(e);
      }
    });
    ui.wait_async(null, () => {
      if (this._ui === ui) {
        this._ui = null;
        this._uiUrl = null;
      }
    });
  }

  destroy() {
    this._cancellable.cancel();
    if (this._watch) Gio.bus_unwatch_name(this._watch);
    this._watch = 0;
    if (this._proxy) {
      // Best effort: the daemon also forgets a subscriber whose connection goes away.
      this._proxy.call(METHOD.Unsubscribe, null, Gio.DBusCallFlags.NONE, 1000, null, null);
    }
    this._dropProxy();
    this._ui?.force_exit();
    this._ui = null;
    super.destroy();
  }
});

class Extension {
  enable() {
    this._indicator = new EbpfmonIndicator();
    Main.panel.addToStatusArea('ebpfmon', this._indicator);
  }

  disable() {
    this._indicator?.destroy();
    this._indicator = null;
  }
}

function init() {
  return new Extension();
}
