// Keeps the dashboard current. With the live feed (`/api/stream/orders`, issue 16) an update
// patches its card at once and the loaded range is re-queried at most once a second; without
// it the loaded range is re-queried every few seconds while the tab is visible. Either way the
// page patches rows by order id: no reload, no lost scroll, no closed panel.
import { useEffect, useRef, useState } from './lib.js';

const POLL_MS = 3000;
const REQUERY_MS = 1000;

/**
 * @param {{project: string, enabled: boolean, stream: boolean, refresh: () => Promise<any>,
 *          patch: (row: any) => void, slaChange: (change: any) => void}} options
 * @returns {{state: 'live'|'polling'|'connecting'|'offline'|'paused', at: Date|null}}
 */
export function useLive({ project, enabled, stream, refresh, patch, slaChange }) {
  const [status, setStatus] = useState({ state: /** @type {any} */ (enabled ? 'connecting' : 'paused'), at: null });
  const handlers = useRef({ refresh, patch, slaChange });
  handlers.current = { refresh, patch, slaChange };

  useEffect(() => {
    if (!enabled) {
      setStatus({ state: 'paused', at: null });
      return undefined;
    }
    let stopped = false;
    let pending = /** @type {any} */ (null);
    let last = 0;
    const requery = () => {
      if (pending) return;
      const wait = Math.max(0, last + REQUERY_MS - Date.now());
      pending = setTimeout(async () => {
        pending = null;
        last = Date.now();
        try {
          await handlers.current.refresh();
          if (!stopped) setStatus((s) => ({ state: s.state === 'offline' ? (stream ? 'live' : 'polling') : s.state, at: new Date() }));
        } catch {
          if (!stopped) setStatus((s) => ({ ...s, state: 'offline' }));
        }
      }, wait);
    };

    if (stream) {
      const source = new EventSource(`/api/stream/orders?project=${encodeURIComponent(project)}`);
      const on = (apply) => (event) => {
        try {
          apply(JSON.parse(event.data));
        } catch { /* a malformed event is skipped; the next re-query repairs the view */ }
        setStatus({ state: 'live', at: new Date() });
        requery();
      };
      source.addEventListener('order_updated', on((data) => handlers.current.patch(data.order || data)));
      source.addEventListener('sla_changed', on((data) => handlers.current.slaChange(data)));
      source.addEventListener('invalidate', requery);
      source.onopen = () => setStatus((s) => ({ ...s, state: 'live' }));
      source.onerror = () => setStatus((s) => ({ ...s, state: source.readyState === EventSource.CLOSED ? 'offline' : 'connecting' }));
      return () => { stopped = true; clearTimeout(pending); source.close(); };
    }

    setStatus({ state: 'polling', at: new Date() });
    const timer = setInterval(() => {
      if (document.visibilityState === 'visible') requery();
    }, POLL_MS);
    return () => { stopped = true; clearInterval(timer); clearTimeout(pending); };
  }, [project, enabled, stream]);

  return status;
}
