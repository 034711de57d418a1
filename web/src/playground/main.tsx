// GraphiQL, bundled: no CDN. The Monaco language workers come from `setup-workers/vite` (the
// esm.sh variant would fetch them from the internet). The API key typed in the bar is sent as
// the Authorization header over HTTP and in the websocket's connection_init payload.
import 'graphiql/setup-workers/vite';
import 'graphiql/style.css';
import './playground.css';

import { createGraphiQLFetcher, type Fetcher } from '@graphiql/toolkit';
import { GraphiQL } from 'graphiql';
import { GraphQLError } from 'graphql';
import { StrictMode, useMemo, useState } from 'react';
import { createRoot } from 'react-dom/client';

import { bearer, graphqlHttpUrl, graphqlWsUrl, loadApiKey, saveApiKey } from '../shared/config';
import { starterTabs } from './tabs';

function Playground() {
  const [key, setKey] = useState(loadApiKey);
  const [draft, setDraft] = useState(key);
  const tabs = useMemo(starterTabs, []);
  const fetcher: Fetcher = useMemo(
    () =>
      key
        ? createGraphiQLFetcher({
            url: graphqlHttpUrl(),
            subscriptionUrl: graphqlWsUrl(),
            headers: { Authorization: bearer(key) },
            wsConnectionParams: { authorization: bearer(key) },
          })
        : // Without a key every request would be a 401: say what to do instead.
          async () => ({ errors: [new GraphQLError('Enter your API key in the bar above, then run again.')] }),
    [key],
  );
  const save = (event: React.FormEvent) => {
    event.preventDefault();
    const trimmed = draft.trim();
    saveApiKey(trimmed);
    setKey(trimmed);
  };
  return (
    <div className="playground">
      <form className="keybar" onSubmit={save} aria-label="API key">
        <a className="brand" href="../">
          CareBridge
        </a>
        <span className="title">GraphQL playground</span>
        <label>
          API key
          <input
            name="api-key"
            type="password"
            autoComplete="off"
            spellCheck={false}
            placeholder="Bearer key, e.g. carebridge-dev-key"
            value={draft}
            onChange={(event) => setDraft(event.target.value)}
          />
        </label>
        <button type="submit">Use key</button>
        <span className={key ? 'key-state set' : 'key-state unset'} data-testid="key-state">
          {key ? 'key set' : 'no key: every request is refused (401)'}
        </span>
      </form>
      <div className="graphiql-host">
        {/* Remount on a key change so the schema is fetched again with the new key. */}
        <GraphiQL key={key} fetcher={fetcher} defaultTabs={tabs} defaultEditorToolsVisibility />
      </div>
    </div>
  );
}

const root = document.getElementById('root');
if (root) {
  createRoot(root).render(
    <StrictMode>
      <Playground />
    </StrictMode>,
  );
}
