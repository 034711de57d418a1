// The graphql-http audit suite (GraphQL-over-HTTP spec) against a running CareBridge.
// Usage: CAREBRIDGE_URL=http://127.0.0.1:8080/graphql CAREBRIDGE_KEY=… node audit.mjs
// Every request carries the API key (CareBridge answers 401 without one). Exits 1 if any
// MUST item fails; SHOULD/MAY items that fail are listed as warnings.
import { serverAudits } from 'graphql-http';

const url = process.env.CAREBRIDGE_URL ?? 'http://127.0.0.1:8080/graphql';
const key = process.env.CAREBRIDGE_KEY ?? 'carebridge-dev-key';

const fetchFn = (input, init = {}) => {
  const headers = new Headers(init.headers ?? {});
  headers.set('authorization', `Bearer ${key}`);
  return fetch(input, { ...init, headers });
};

let mustFailures = 0;
let passed = 0;
for (const audit of serverAudits({ url, fetchFn })) {
  const result = await audit.fn();
  if (result.status === 'ok') {
    passed += 1;
    continue;
  }
  const level = audit.name.startsWith('MUST') ? 'FAIL' : 'warn';
  if (level === 'FAIL') mustFailures += 1;
  console.log(`${level} ${audit.name}: ${result.reason}`);
}
console.log(`graphql-http audit: ${passed} passed, ${mustFailures} MUST failures`);
process.exit(mustFailures === 0 ? 0 : 1);
