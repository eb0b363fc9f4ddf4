// The UI's one view of its libraries: Preact with hooks, and htm bound to Preact's `h`, so
// components are written as tagged templates without a build step.
import { h, render, Fragment } from '../vendor/preact/preact.mjs';
import htm from '../vendor/htm/htm.mjs';

export { h, render, Fragment };
export { useState, useEffect, useLayoutEffect, useRef, useMemo, useCallback } from '../vendor/preact/hooks.mjs';
export const html = htm.bind(h);
