// Charts drawn by uPlot on a canvas, over categories: groups, histogram bins or the buckets of a
// period are the x axis by their index, so every chart of the analytics page has one shape.
// Colours come from the theme's CSS variables and the chart is drawn again when the theme,
// the language or the data change; it follows its box's width.
import uPlotModule from '../vendor/uplot/uPlot.esm.js';
import { html, useEffect, useRef } from './lib.js';
import { currentTheme, lang } from './i18n.js';

/** uPlot's constructor (its JSDoc types do not describe it as one). */
const uPlot = /** @type {any} */ (uPlotModule);

/**
 * One line of figures over the categories.
 * @typedef {{
 *   label: string,
 *   values: (number|null)[],
 *   colour: string,
 *   style: 'bar'|'line'|'points',
 *   width?: number,
 *   shown?: (number|null)[],
 * }} Series
 * `colour` names a CSS variable of the theme (`--ok`); `width` is a bar's share of its slot;
 * `shown` is what the readout says when `values` are stacked sums.
 */

/** A CSS variable of the current theme. */
function themed(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

/** Every `step`-th category is labelled, `slot` pixels each, so the labels never overlap. */
function labelled(count, width, slot) {
  const room = Math.max(1, Math.floor(width / slot));
  const step = Math.max(1, Math.ceil(count / room));
  const out = [];
  for (let i = 0; i < count; i += step) out.push(i);
  return out;
}

/** Shortens a label to what fits under its slot. */
function fitted(text, slot) {
  const room = Math.max(4, Math.floor(slot / 7));
  return text.length > room ? text.slice(0, room - 1) + '…' : text;
}

/**
 * A chart over `labels`; hovering a category writes its figures in the line under the chart.
 * @param {{labels: string[], series: Series[], format: (v: number) => string, name: string,
 *   axis?: string, max?: number, height?: number}} props
 * `axis` names the x axis under it; `max` fixes the top of the y axis (1 for shares).
 */
export function Chart({ labels, series, format, name, axis, max, height = 240 }) {
  const box = useRef(/** @type {HTMLDivElement|null} */ (null));
  const readout = useRef(/** @type {HTMLDivElement|null} */ (null));
  const key = JSON.stringify([labels, series, axis, max, currentTheme(), lang()]);
  useEffect(() => {
    const node = box.current;
    if (!node) return undefined;
    const count = labels.length;
    const text = themed('--muted');
    const line = themed('--line');
    const font = '12px system-ui, sans-serif';
    const width = () => Math.max(280, node.clientWidth);
    const inner = (u) => u.bbox.width / devicePixelRatio;
    const slot = Math.min(110, Math.max(44, 7 * Math.max(0, ...labels.map((l) => l.length)) + 14));
    const say = (u) => {
      const i = u.cursor.idx;
      if (!readout.current) return;
      readout.current.textContent = i == null ? '' : `${name} ${labels[i]}: ` + series.map((s) => {
        const value = (s.shown || s.values)[i];
        return `${s.label} ${value == null ? '—' : format(value)}`;
      }).join(' · ');
    };
    /** @type {any} */
    const options = {
      width: width(),
      height,
      padding: [12, Math.round(slot / 2), 0, 4],
      cursor: { points: { show: false }, drag: { x: false, y: false } },
      legend: { show: true, live: false },
      hooks: { setCursor: [say] },
      scales: {
        x: { time: false, range: () => [-0.5, count - 0.5] },
        y: { range: (u, low, high) => [0, max ?? (high > 0 ? high * 1.1 : 1)] },
      },
      axes: [
        {
          stroke: text, font, labelFont: font, label: axis, labelSize: axis ? 20 : 0, labelGap: 0,
          grid: { show: false }, ticks: { stroke: line, size: 4 },
          splits: (u) => labelled(count, inner(u), slot),
          values: (u, splits) => splits.map((i) => fitted(labels[i] ?? '', inner(u) / Math.max(1, splits.length))),
        },
        {
          stroke: text, font, size: 78, grid: { stroke: line, width: 1 }, ticks: { stroke: line, size: 4 },
          values: (u, splits) => splits.map((v) => format(v)),
        },
      ],
      series: [
        { label: name },
        ...series.map((s) => {
          const colour = themed(s.colour);
          if (s.style === 'bar') {
            return { label: s.label, fill: colour, stroke: colour, width: 0,
              paths: uPlot.paths.bars({ size: [s.width ?? 0.6, 80], gap: 1 }), points: { show: false } };
          }
          if (s.style === 'points') {
            return { label: s.label, stroke: colour, fill: colour, width: 0,
              paths: () => null, points: { show: true, size: 9, width: 1, stroke: colour, fill: colour } };
          }
          return { label: s.label, stroke: colour, width: 2, spanGaps: true,
            points: { show: count <= 40, size: 5, stroke: colour, fill: colour } };
        }),
      ],
    };
    const data = [labels.map((_, i) => i), ...series.map((s) => s.values)];
    const plot = new uPlot(options, data, node);
    const resized = new ResizeObserver(() => {
      if (width() !== plot.width) plot.setSize({ width: width(), height });
    });
    resized.observe(node);
    return () => {
      resized.disconnect();
      plot.destroy();
    };
  }, [key]);
  return html`<div class="chart-box"><div class="chart" ref=${box}></div>
    <div class="chart-readout muted small" ref=${readout} aria-hidden="true"></div></div>`;
}
