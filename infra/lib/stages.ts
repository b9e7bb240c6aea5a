import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { FUNCTION_NAMES, FunctionName } from './config';

/**
 * The stage table the Rust code generates (`opx_app::ports::stage_table_json`; a Rust test
 * fails when this file differs from it). Which event type wakes which function, and which
 * event types page a human, are declared there once.
 */
export const STAGE_TABLE_PATH = path.join(__dirname, 'generated', 'stages.json');

/** One stage of the pipeline, as the Rust code defines it. */
export interface StageSpec {
  /** The stage's name as stored (`detect`, ..., `page`). */
  readonly stage: string;
  /** The function that runs it. */
  readonly function: FunctionName;
  /** The committed event types it consumes. */
  readonly inputEventTypes: readonly string[];
  /** The committed event types a step of it may write. */
  readonly outputEventTypes: readonly string[];
  /** Whether an opx bus event of an input type invokes its function. */
  readonly runsFromBus: boolean;
}

function stringList(value: unknown, where: string): string[] {
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string' && item.length > 0)) {
    throw new Error(`${where}: expected a list of event type names`);
  }
  return value as string[];
}

/** Reads the generated stage table, refusing anything this app cannot declare. */
export function parseStageTable(text: string): StageSpec[] {
  const document = JSON.parse(text) as { stages?: unknown };
  if (!Array.isArray(document.stages) || document.stages.length === 0) {
    throw new Error(`${STAGE_TABLE_PATH}: no stages; regenerate it (see its generated_by)`);
  }
  return document.stages.map((row: Record<string, unknown>, index: number) => {
    const where = `${STAGE_TABLE_PATH}: stage ${index}`;
    const { stage, function: fn, runs_from_bus: runsFromBus } = row;
    if (typeof stage !== 'string' || stage.length === 0) {
      throw new Error(`${where}: stage must be a name`);
    }
    if (!(FUNCTION_NAMES as readonly unknown[]).includes(fn)) {
      throw new Error(`${where}: function ${String(fn)} is not one of ${FUNCTION_NAMES.join(', ')}`);
    }
    if (typeof runsFromBus !== 'boolean') {
      throw new Error(`${where}: runs_from_bus must be true or false`);
    }
    return {
      stage,
      function: fn as FunctionName,
      inputEventTypes: stringList(row.input_event_types, `${where}: input_event_types`),
      outputEventTypes: stringList(row.output_event_types, `${where}: output_event_types`),
      runsFromBus,
    };
  });
}

/** Every stage, in pipeline order. */
export const STAGES: readonly StageSpec[] = parseStageTable(readFileSync(STAGE_TABLE_PATH, 'utf8'));

/** Which committed event type wakes which stage function: one bus rule each. */
export const STAGE_ROUTES: readonly { readonly detailType: string; readonly stage: FunctionName }[] = STAGES.filter(
  (spec) => spec.runsFromBus,
).flatMap((spec) => spec.inputEventTypes.map((detailType) => ({ detailType, stage: spec.function })));

/** The functions the bus invokes as stages. */
export const STAGE_FUNCTIONS: readonly FunctionName[] = [...new Set(STAGE_ROUTES.map((route) => route.stage))];

function pageStage(): StageSpec {
  const page = STAGES.find((spec) => spec.stage === 'page');
  if (!page || page.runsFromBus || page.inputEventTypes.length === 0) {
    throw new Error(`${STAGE_TABLE_PATH}: no page stage with its event types (and no bus-run function)`);
  }
  return page;
}

/**
 * The committed event types that page a human: the page stage's inputs, the events the
 * pipeline commits with a `page` work item (re-sent by the sweeper when fanout could not).
 */
export const PAGING_EVENT_TYPES: readonly string[] = pageStage().inputEventTypes;
