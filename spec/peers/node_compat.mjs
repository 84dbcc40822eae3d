// Preloaded into the oidc-provider peer (node --import): what oidc-provider 9
// uses from newer Node.js releases than Debian 12's Node 18. Each piece is
// added only where the running Node lacks it, so newer Nodes run unchanged.

// URL.parse (Node 20.18 / 22.1): the URL, or null where `new URL` throws.
if (typeof URL.parse !== 'function') {
  URL.parse = (url, base) => {
    try {
      return new URL(url, base);
    } catch {
      return null;
    }
  };
}
