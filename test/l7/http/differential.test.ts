/**
 * Differential test against Node's own llhttp (through a real node:http server, see oracle.ts).
 *
 * 10,000+ seeded inputs (well-formed pipelines of 1-3 requests, and structural / byte-level mutations of
 * them, see gen.ts), each sent on its own TCP connection (32 in flight) and parsed by our parser
 * in-process (whole, then EOF). Asserted:
 *  - every message we accept, Node accepted too, at the same position, with the same method, target,
 *    header list, body bytes and trailers (so the framing is identical), and as a tunnel iff Node tunnelled;
 *  - everything Node rejects we reject too, at the same message of the pipeline or earlier;
 *  - where we are stricter than Node (we refuse or stop, Node accepts), the reason is one we document in
 *    STRICTER_THAN_NODE. The counts per reason are printed.
 * PORTICO_SEED=<seed> reproduces a run; PORTICO_DIFF_INPUTS=<n> changes the count.
 */
import t from 'tap';
import { Kind } from '../../../src/l7/http/parser.js';
import { STRICTER_THAN_NODE, type StrictnessReason } from '../../../src/l7/http/errors.js';
import { generate, type Generated } from './gen.js';
import { comparable, cutsRandom, feed, Rng, seedFromEnv, type Message, type Transcript } from './helpers.js';
import { NodeOracle, type NodeMessage, type NodeVerdict } from './oracle.js';

const INPUTS = Number(process.env.PORTICO_DIFF_INPUTS ?? 10_000);
const IN_FLIGHT = 32;
const seed = seedFromEnv();
t.comment(`seed ${seed} (PORTICO_SEED=${seed} to reproduce)`);

/** Our accepted messages: complete ones, plus a tunnel's head (upgrade or CONNECT). */
function accepted(ours: Transcript): Message[] {
  return ours.messages.filter((m) => m.complete || isTunnel(m));
}

function isTunnel(m: Message): boolean {
  return m.head.upgrade || m.head.method === 'CONNECT';
}

/** Why our k-th message differs from Node's, or '' when they are the same. */
function difference(a: Message, b: NodeMessage): string {
  if (a.head.method !== b.method) return `method ${a.head.method} vs ${b.method}`;
  if (a.head.target !== b.url) return `target ${a.head.target} vs ${b.url}`;
  if (JSON.stringify(a.head.headers) !== JSON.stringify(b.rawHeaders)) return 'header list';
  if (isTunnel(a) !== b.tunnel) return `tunnel ${isTunnel(a)} vs ${b.tunnel}`;
  if (!b.tunnel && a.body !== b.body) return `body of ${a.body.length} vs ${b.body.length} bytes`;
  if (!b.tunnel && JSON.stringify(a.trailers ?? []) !== JSON.stringify(b.trailers)) return 'trailers';
  return '';
}

t.test(`differential: ${INPUTS} requests, our parser vs Node's llhttp`, async (t) => {
  const rng = new Rng(seed);
  const inputs: Generated[] = Array.from({ length: INPUTS }, () => generate(rng));
  const oracle = new NodeOracle();
  await oracle.start();
  t.teardown(() => oracle.stop());

  const t0 = Date.now();
  const verdicts: NodeVerdict[] = new Array(INPUTS);
  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < INPUTS) {
        const i = next++;
        verdicts[i] = await oracle.send((inputs[i] as Generated).input);
      }
    }),
  );
  const nodeMs = Date.now() - t0;

  let nodeRejects = 0;
  let weReject = 0;
  let bothAccept = 0;
  let wellFormed = 0;
  let wellFormedBothAccept = 0;
  const stricter = new Map<string, number>();
  const silent = new Map<string, number>();
  const wfNot = new Map<string, number>();
  /** For each reason, how often each generator label was among the input's mutations. */
  const stricterLabels = new Map<string, Map<string, number>>();
  const violations: string[] = [];
  for (let i = 0; i < INPUTS; i++) {
    const { input, labels } = inputs[i] as Generated;
    const node = verdicts[i] as NodeVerdict;
    const ours = feed(Kind.Request, input, []);
    const split = feed(Kind.Request, input, cutsRandom(input.length, rng));
    const where = `input ${i} [${labels.join(', ')}] ${JSON.stringify(input.toString('latin1')).slice(0, 300)}`;
    if (JSON.stringify(comparable(split)) !== JSON.stringify(comparable(ours))) violations.push(`${where}: differs when split`);

    const O = accepted(ours);
    const N = node.messages;
    if (node.error) nodeRejects++;
    if (ours.error) weReject++;
    if (node.error === 'timeout') violations.push(`${where}: Node never answered`);
    if (O.length > N.length) violations.push(`${where}: we accepted ${O.length} messages, Node ${N.length} (${node.error ?? 'no error'})`);
    for (let k = 0; k < Math.min(O.length, N.length); k++) {
      const diff = difference(O[k] as Message, N[k] as NodeMessage);
      if (diff) violations.push(`${where}: message ${k} differs: ${diff}`);
    }
    // Node refused something after N messages: we must not have gone on as if all was well.
    const weStopped = ours.error !== undefined || ours.phase === 'done' || ours.phase === 'upgraded';
    if (node.error && O.length === N.length && !weStopped) violations.push(`${where}: Node rejects (${node.error}), we accept`);

    // Stricter: a message Node accepted, we did not. (We may also flag an error where Node silently drops
    // an incomplete head at EOF or skips stray bytes: counted apart, no message is at stake.)
    if (O.length === N.length && ours.error && !node.error) silent.set(ours.error, (silent.get(ours.error) ?? 0) + 1);
    if (O.length < N.length) {
      const reason = ours.error ?? (ours.phase === 'done' ? 'CONNECTION_CLOSE' : `stopped in phase ${ours.phase}`);
      stricter.set(reason, (stricter.get(reason) ?? 0) + 1);
      const ls = stricterLabels.get(reason) ?? new Map<string, number>();
      for (const l of new Set(labels.map((x) => x.split(':')[0] as string))) ls.set(l, (ls.get(l) ?? 0) + 1);
      stricterLabels.set(reason, ls);
      if (!(reason in STRICTER_THAN_NODE))
        violations.push(`${where}: we reject with ${reason} what Node accepts, and that is not a documented strictness`);
    }
    if (!node.error && !ours.error) bothAccept++;
    if (labels[0] === 'well-formed') {
      wellFormed++;
      if (!node.error && !ours.error && O.length === N.length) wellFormedBothAccept++;
      else wfNot.set(`${node.error}/${ours.error ?? ours.phase}`, (wfNot.get(`${node.error}/${ours.error ?? ours.phase}`) ?? 0) + 1);
    }
  }

  t.comment(`seed ${seed}: ${INPUTS} inputs (${wellFormed} well-formed), Node answered in ${nodeMs} ms`);
  t.comment(
    `Node rejects ${nodeRejects}, we reject ${weReject}, both accept ${bothAccept}; well-formed accepted by both: ${wellFormedBothAccept}/${wellFormed}`,
  );
  t.comment(`stricter than Node (we refuse or stop, Node accepts), by reason:`);
  for (const [reason, n] of [...stricter.entries()].sort((a, b) => b[1] - a[1])) {
    const top = [...(stricterLabels.get(reason) ?? new Map<string, number>()).entries()].sort((a, b) => b[1] - a[1]).slice(0, 3);
    t.comment(
      `  ${reason.padEnd(38)} ${String(n).padStart(5)}   mostly in inputs mutated by: ${top.map(([l, c]) => `${l} ${c}`).join(', ')}`,
    );
  }
  t.comment(
    `we flag an error where Node stops silently (no message at stake): ${[...silent.entries()].map(([k, v]) => `${k} ${v}`).join(', ')}`,
  );
  t.comment(
    `well-formed not accepted by both: ${[...wfNot.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  );
  for (const v of violations.slice(0, 20)) t.comment(`VIOLATION ${v}`);
  t.equal(violations.length, 0, 'no violations');
  t.ok(
    INPUTS < 1000 || wellFormedBothAccept / wellFormed > 0.9,
    'the generator mostly makes requests both parsers accept (the test is not vacuous)',
  );
  t.ok(INPUTS < 1000 || nodeRejects > INPUTS / 4, 'and enough that Node rejects');
  for (const reason of stricter.keys())
    t.ok(reason in STRICTER_THAN_NODE, `${reason} is documented: ${STRICTER_THAN_NODE[reason as StrictnessReason] ?? '(missing)'}`);
});
