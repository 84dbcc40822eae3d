// Preloaded into the oidc-provider peer (node --import): what oidc-provider 9
// uses from Node.js releases newer than Debian 12's Node 18. Each piece is
// added only where the running Node lacks it: newer Nodes run unchanged.
import * as crypto from 'node:crypto';
import { register } from 'node:module';

// URL.parse (Node 20.18, 22.1): the URL, or null where `new URL` throws.
if (typeof URL.parse !== 'function') {
  URL.parse = (url, base) => {
    try {
      return new URL(url, base);
    } catch {
      return null;
    }
  };
}

// The global WebCrypto object (Node 19), which jose signs with.
if (typeof globalThis.crypto === 'undefined') {
  Object.defineProperty(globalThis, 'crypto', { value: crypto.webcrypto, configurable: true, writable: true });
}

// crypto.hash (Node 20.12, 21.7). oidc-provider imports node:crypto as a
// namespace, which cannot gain a name, so its imports of node:crypto are
// resolved to node_compat_crypto.mjs: node:crypto plus hash.
if (typeof crypto.hash !== 'function') {
  register('./node_compat_hooks.mjs', import.meta.url);
}
