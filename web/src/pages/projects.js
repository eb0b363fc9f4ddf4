// The caller's projects as cards, each with its open, over and near counts from the project's
// KPIs (once the API has them), refreshed every minute.
import { html, useEffect } from '../lib.js';
import { api } from '../api.js';
import { t } from '../i18n.js';
import { number, offset } from '../format.js';
import { kpiCount } from '../project.js';
import { Link } from '../router.js';
import { LoadError, useData } from '../ui.js';
import { useFeatures } from '../features.js';

export function ProjectsPage({ me }) {
  const features = useFeatures();
  const withKpis = features.has('/api/orders/kpis');
  const { data, error, reload } = useData(async (signal) => {
    if (!withKpis) return {};
    const all = await Promise.all(me.projects.map((p) => api.kpis({ project: p.slug, open: 'true' }, signal).catch(() => null)));
    return Object.fromEntries(me.projects.map((p, i) => [p.slug, all[i]]));
  }, [withKpis, me]);
  useEffect(() => {
    const timer = setInterval(reload, 60_000);
    return () => clearInterval(timer);
  }, [reload]);

  return html`<section class="page">
    <h1>${t('nav.projects')}</h1>
    <${LoadError} error=${error} retry=${reload} />
    ${me.projects.length === 0 && html`<p class="muted">${t('projects.none')}</p>`}
    <div class="project-grid">
      ${me.projects.map((p) => {
        const answer = data && data[p.slug];
        const k = answer && (answer.kpis || answer);
        return html`<${Link} class="card project-card" href=${'/p/' + p.slug} data-project=${p.slug}>
          <h2>${p.name}</h2>
          <div class="muted">${p.slug} · ${p.timezone} (${offset(p.timezone)}) · ${t('role.' + p.role)}</div>
          ${withKpis && html`<dl class="counts">
            <div><dt>${t('kpi.open')}</dt><dd>${number(kpiCount(k, 'count'))}</dd></div>
            <div class="sla-over"><dt>${t('sla.over')}</dt><dd>${number(kpiCount(k, 'sla.over'))}</dd></div>
            <div class="sla-near"><dt>${t('sla.near')}</dt><dd>${number(kpiCount(k, 'sla.near'))}</dd></div>
          </dl>`}
        </${Link}>`;
      })}
    </div>
  </section>`;
}
