// PostGraphile 5 asks for Node.js ≥ 22; this machine has Node 20. The one Node 22 feature it
// reaches on the benchmark's path is Promise.withResolvers (ES2024), defined here as the
// specification does. Loaded with `node --import ./node20-shims.mjs` (only when missing).
if (typeof Promise.withResolvers !== "function") {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
