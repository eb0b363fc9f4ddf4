// Which of the API's optional parts exist (see `capabilities` in api.js), for components.
import { useEffect, useState } from './lib.js';
import { capabilities } from './api.js';

/** @returns {Set<string>} the API paths its OpenAPI document describes (empty until known) */
export function useFeatures() {
  const [features, setFeatures] = useState(/** @type {Set<string>} */ (new Set()));
  useEffect(() => {
    let live = true;
    capabilities().then((f) => live && setFeatures(f));
    return () => { live = false; };
  }, []);
  return features;
}
