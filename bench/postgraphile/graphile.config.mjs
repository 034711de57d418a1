// PostGraphile 5 over the gateway's own PostgreSQL database: the "≥ 5× PostGraphile" baseline of
// the dashboard query (bench/run-query.sh). Stock Amber preset; the only change is that
// PostGraphile may filter and order on columns without an index of their own (the board filters
// on `deleted` and orders by `vendor_created_at`, as the gateway's `queue` field does), so it
// can be asked the same question. No GraphiQL, no watch mode, no explain.
//
// env: DATABASE_URL (the database to serve), PORT (default 18174)
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { makePgService } from "postgraphile/adaptors/pg";

/** @type {GraphileConfig.Preset} */
const preset = {
  extends: [PostGraphileAmberPreset],
  disablePlugins: ["PgIndexBehaviorsPlugin"],
  pgServices: [
    makePgService({ connectionString: process.env.DATABASE_URL, schemas: ["public"] }),
  ],
  grafserv: {
    host: "127.0.0.1",
    port: Number(process.env.PORT ?? 18174),
    graphiql: false,
    watch: false,
  },
  grafast: { explain: false },
};

export default preset;
