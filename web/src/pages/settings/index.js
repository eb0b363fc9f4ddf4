// Settings (admins only): one tab per part of the settings document, plus the project itself.
import { html } from '../../lib.js';
import { t } from '../../i18n.js';
import { names as loadNames } from '../../project.js';
import { setQuery } from '../../router.js';
import { Tabs, useData } from '../../ui.js';
import { ProjectEditor } from './project.js';
import { SlaEditor } from './sla.js';
import { HoursEditor } from './hours.js';
import { CyclesEditor } from './cycles.js';
import { TerminalEditor } from './terminal.js';
import { UrgencyEditor } from './urgency.js';

const TABS = [
  ['project', ProjectEditor],
  ['sla', SlaEditor],
  ['hours', HoursEditor],
  ['cycles', CyclesEditor],
  ['terminal', TerminalEditor],
  ['urgency', UrgencyEditor],
];

export function SettingsPage({ project, query }) {
  const slug = project.slug;
  const names = useData(() => loadNames(slug), [slug]);
  const active = TABS.find(([id]) => id === query.tab) || TABS[0];
  const Editor = active[1];
  return html`<section class="page settings">
    <h1>${t('nav.settings')} · ${project.name}</h1>
    <${Tabs} tabs=${TABS.map(([id]) => ({ id, label: t('settings.tab.' + id) }))} active=${active[0]} onSelect=${(tab) => setQuery({ tab })} />
    <${Editor} key=${active[0]} slug=${slug} names=${names.data} onNamesChanged=${names.reload} />
  </section>`;
}
