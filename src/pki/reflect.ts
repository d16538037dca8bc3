/**
 * The three Reflect metadata functions tsyringe (a dependency of @peculiar/x509) calls, installed only
 * when no polyfill (reflect-metadata, core-js) is present. Imported before @peculiar/x509, once.
 */
type MetaReflect = typeof Reflect & {
  defineMetadata?: (key: unknown, value: unknown, target: object, prop?: PropertyKey) => void;
  getOwnMetadata?: (key: unknown, target: object, prop?: PropertyKey) => unknown;
  getMetadata?: (key: unknown, target: object, prop?: PropertyKey) => unknown;
};

const R = Reflect as MetaReflect;
if (typeof R.getMetadata !== 'function') {
  const store = new WeakMap<object, Map<PropertyKey | undefined, Map<unknown, unknown>>>();
  const own = (target: object, prop: PropertyKey | undefined, create: boolean): Map<unknown, unknown> | undefined => {
    let byProp = store.get(target);
    if (!byProp) {
      if (!create) return undefined;
      store.set(target, (byProp = new Map()));
    }
    let m = byProp.get(prop);
    if (!m && create) byProp.set(prop, (m = new Map()));
    return m;
  };
  R.defineMetadata = (key, value, target, prop) => void own(target, prop, true)!.set(key, value);
  R.getOwnMetadata = (key, target, prop) => own(target, prop, false)?.get(key);
  R.getMetadata = (key, target, prop) => {
    for (let t: object | null = target; t; t = Object.getPrototypeOf(t) as object | null) {
      const m = own(t, prop, false);
      if (m?.has(key)) return m.get(key);
    }
    return undefined;
  };
}

export {};
