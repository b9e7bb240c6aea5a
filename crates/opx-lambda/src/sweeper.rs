//! `sweeper` (scheduled): re-drives work whose notification was lost.
//!
//! Every step's work item is committed with the event that creates the work and removed
//! with the step's output, so the work queue holds exactly the steps that did not happen.
//! The sweeper reads it a bounded number of pages and runs each item that has been
//! pending for at least the minimum age through [`Pipeline::run`], pass after pass (a
//! step queues the next stage's work) until a pass makes no progress. That is safe even if
//! the notification arrives at the same moment: steps are idempotent and their commits
//! conditional, so one of the two runs and the other finds it done. A lost notification
//! therefore delays work by at most the schedule period plus the age, and never loses it.
//!
//! A [`Stage::Page`] item is a page whose publish the fan-out could not confirm: the sweeper
//! sends it through the pager it is given (the EventBridge bus, while the stage steps keep
//! publishing nothing) and removes the item. A page sent twice carries the same message
//! id, so the subscriber drops the copy.
//!
//! Bounded by [`SweepLimits`] (pages, page size, steps) and by the invocation's remaining
//! time ([`SWEEP_TIME_RESERVE_MS`]). A failing item is counted, logged and left queued;
//! it never stops the sweep.

use crate::error::HandlerError;
use crate::invocation::Invocation;
use opx_app::pipeline::Pipeline;
use opx_app::ports::{Page, Publisher, Stage, Store, StoreError, StoreRead, WorkItem};
use opx_store_dynamodb::DynamoStore;
use serde::Serialize;
use std::collections::BTreeSet;
use std::future::Future;

/// Pending work items read per page.
pub const SWEEP_PAGE_SIZE: usize = 100;
/// Most pages read per invocation.
pub const SWEEP_PAGES_MAX: usize = 20;
/// Most steps run per invocation.
pub const SWEEP_STEPS_MAX: u64 = 1_000;
/// Time kept in reserve before the deadline, in milliseconds: no new step starts with
/// less left.
pub const SWEEP_TIME_RESERVE_MS: i64 = 10_000;
/// Most failed work items listed in a [`SweepReport`] (all are counted).
pub const SWEEP_FAILURES_LISTED_MAX: usize = 20;

/// A pending work item and, where the store records it, when it was first added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgedWork {
    /// The work.
    pub item: WorkItem,
    /// Milliseconds since the epoch; `None` when the store does not record it (then the
    /// item counts as old enough).
    pub added_at_ms: Option<u64>,
}

/// Pending work with its age, a page at a time.
pub trait PendingWorkSource: Send + Sync {
    /// Like [`StoreRead::pending_work`], with ages.
    fn pending_work_aged(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<AgedWork>, StoreError>> + Send;
}

impl PendingWorkSource for DynamoStore {
    async fn pending_work_aged(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<AgedWork>, StoreError> {
        let page = self.pending_work_added(cursor, limit).await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|pending| AgedWork {
                    item: pending.item,
                    added_at_ms: Some(pending.added_at_ms),
                })
                .collect(),
            next: page.next,
        })
    }
}

/// A store that does not record when work was added (SQLite): every item is old enough.
pub struct AgeUnknown<'a, S>(pub &'a S);

impl<S: StoreRead> PendingWorkSource for AgeUnknown<'_, S> {
    async fn pending_work_aged(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<AgedWork>, StoreError> {
        let page = self.0.pending_work(cursor, limit).await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|item| AgedWork {
                    item,
                    added_at_ms: None,
                })
                .collect(),
            next: page.next,
        })
    }
}

/// How far one sweep goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepLimits {
    /// Items per page (at most the store's page limit).
    pub page_size: usize,
    /// Pages per sweep.
    pub pages_max: usize,
    /// Steps per sweep.
    pub steps_max: u64,
    /// Only items pending at least this long are re-driven, in milliseconds.
    pub min_age_ms: u64,
}

impl SweepLimits {
    /// The default limits with a minimum age.
    pub fn with_min_age_ms(min_age_ms: u64) -> SweepLimits {
        SweepLimits {
            page_size: SWEEP_PAGE_SIZE,
            pages_max: SWEEP_PAGES_MAX,
            steps_max: SWEEP_STEPS_MAX,
            min_age_ms,
        }
    }
}

/// Why a sweep ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepEnd {
    /// A pass over the whole queue found nothing more to run.
    QueueEnd,
    /// It read [`SweepLimits::pages_max`] pages.
    PageLimit,
    /// It ran [`SweepLimits::steps_max`] steps.
    StepLimit,
    /// The invocation was about to run out of time.
    OutOfTime,
}

/// What one sweep did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Pages read.
    pub pages: u64,
    /// Pending items looked at (an item still pending in a later pass counts again).
    pub seen: u64,
    /// Items skipped because they were younger than the minimum age.
    pub too_young: u64,
    /// Steps run.
    pub steps: u64,
    /// Steps that committed new output (their notification had been lost or is late).
    pub redriven: u64,
    /// Steps already done (the queue item was stale or the notification won).
    pub already_done: u64,
    /// Pages sent ([`Stage::Page`] items whose fan-out publish had failed or is late).
    pub pages_sent: u64,
    /// Incidents opened by re-driven steps.
    pub incidents_opened: u64,
    /// Steps that failed and a later run can retry.
    pub failed_retryable: u64,
    /// Steps that failed for good (left queued for investigation).
    pub failed_permanent: u64,
    /// The first [`SWEEP_FAILURES_LISTED_MAX`] failures, as `work: error`.
    pub failures: Vec<String>,
    /// Why the sweep ended.
    pub end: SweepEnd,
}

/// Re-drives stalled work, sending pages through `pager`; see the module documentation.
pub async fn handle_sweep<S: Store, P: Publisher, Q: Publisher, W: PendingWorkSource>(
    pipeline: &Pipeline<'_, S, P>,
    pager: &Q,
    work: &W,
    invocation: &Invocation<'_>,
    limits: &SweepLimits,
) -> Result<SweepReport, HandlerError> {
    let mut report = SweepReport {
        pages: 0,
        seen: 0,
        too_young: 0,
        steps: 0,
        redriven: 0,
        already_done: 0,
        pages_sent: 0,
        incidents_opened: 0,
        failed_retryable: 0,
        failed_permanent: 0,
        failures: Vec::new(),
        end: SweepEnd::QueueEnd,
    };
    let out_of_time = || {
        invocation
            .remaining_ms()
            .is_some_and(|remaining| remaining < SWEEP_TIME_RESERVE_MS)
    };
    // Steps add the next stage's work behind the cursor, so the queue is read in passes
    // (like `Pipeline::drain`) until a pass makes no progress; failed items are skipped in
    // later passes so one poison item cannot use up the budget.
    let mut failed: BTreeSet<String> = BTreeSet::new();
    'passes: loop {
        let mut progressed = false;
        let mut cursor: Option<String> = None;
        loop {
            if report.pages >= limits.pages_max as u64 {
                report.end = SweepEnd::PageLimit;
                break 'passes;
            }
            if out_of_time() {
                report.end = SweepEnd::OutOfTime;
                break 'passes;
            }
            let page = Box::pin(work.pending_work_aged(cursor.as_deref(), limits.page_size))
                .await
                .map_err(|error| HandlerError::from(error).logged(invocation.function))?;
            report.pages += 1;
            for pending in &page.items {
                let key = pending.item.key();
                if failed.contains(&key) {
                    continue;
                }
                report.seen += 1;
                let now_ms = u64::try_from(invocation.clock.now().0).unwrap_or(0);
                let young = pending
                    .added_at_ms
                    .is_some_and(|added| now_ms.saturating_sub(added) < limits.min_age_ms);
                if young {
                    report.too_young += 1;
                    continue;
                }
                if report.steps >= limits.steps_max {
                    report.end = SweepEnd::StepLimit;
                    break 'passes;
                }
                if out_of_time() {
                    report.end = SweepEnd::OutOfTime;
                    break 'passes;
                }
                report.steps += 1;
                // Boxed: a step's future is deep (every stage's code), and the sweep loop around it
                // would otherwise exceed the compiler's layout depth in the function binary.
                let step = if pending.item.stage == Stage::Page {
                    Box::pin(pipeline.page(&pending.item, pager)).await
                } else {
                    Box::pin(pipeline.run(&pending.item)).await
                };
                match step {
                    Ok(step) if step.already_done => {
                        progressed = true;
                        report.already_done += 1;
                    }
                    Ok(step) if step.pages_sent > 0 => {
                        progressed = true;
                        report.pages_sent += step.pages_sent;
                        tracing::info!(function = invocation.function, work = %key, "page sent");
                    }
                    Ok(step) => {
                        progressed = true;
                        report.redriven += 1;
                        report.incidents_opened += step.incidents_opened.len() as u64;
                        Box::pin(crate::stage::record_metrics(pipeline, invocation, &step)).await;
                        tracing::info!(function = invocation.function, work = %key, events = step.events.len(), "stalled work re-driven");
                    }
                    Err(error) => {
                        let retryable = error.is_transient();
                        if retryable {
                            report.failed_retryable += 1;
                            tracing::warn!(function = invocation.function, retryable, work = %key, %error, "step failed; left queued for the next sweep");
                        } else {
                            report.failed_permanent += 1;
                            tracing::error!(function = invocation.function, retryable, work = %key, %error, "step failed for good; left queued for investigation");
                        }
                        if report.failures.len() < SWEEP_FAILURES_LISTED_MAX {
                            report.failures.push(format!("{key}: {error}"));
                        }
                        failed.insert(key);
                    }
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        if !progressed {
            report.end = SweepEnd::QueueEnd;
            break;
        }
    }
    tracing::info!(
        function = invocation.function,
        request_id = invocation.request_id,
        pages = report.pages,
        seen = report.seen,
        too_young = report.too_young,
        steps = report.steps,
        redriven = report.redriven,
        already_done = report.already_done,
        pages_sent = report.pages_sent,
        failed_retryable = report.failed_retryable,
        failed_permanent = report.failed_permanent,
        end = ?report.end,
        "sweep finished"
    );
    Ok(report)
}
