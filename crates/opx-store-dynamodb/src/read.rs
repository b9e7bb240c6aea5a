//! Reads: strongly consistent, bounded, and followed across DynamoDB's 1 MB pages.

use crate::cursor::{self, List};
use crate::error::sdk_error;
use crate::items::{
    self, attribute, kind, EventItem, IdempotencyItem, IdempotencyKey, Item, ProjectionItem,
    RejectItem, StreamItem, WorkRow,
};
use crate::plan::{check_key, check_kind, projection_key};
use crate::{DynamoStore, PendingWork, QUERY_CALLS_MAX};
use aws_sdk_dynamodb::types::AttributeValue;
use opx_app::ports::{
    IdempotencyRecord, Page, Projection, RejectRecord, StoreError, READ_PAGE_SIZE_MAX,
};
use opx_domain::event::EventEnvelope;

/// The items of one read, and whether more follow.
struct Items {
    items: Vec<Item>,
    more: bool,
}

/// A Query of one partition.
struct Query<'a> {
    doing: &'a str,
    table: &'a str,
    key_condition: &'a str,
    names: Vec<(&'static str, &'static str)>,
    values: Vec<(&'static str, AttributeValue)>,
    start: Option<Item>,
    forward: bool,
}

/// The page size a caller asked for, capped; 0 is refused.
fn page_size(limit: usize, what: &str) -> Result<usize, StoreError> {
    if limit == 0 {
        return Err(StoreError::Invalid(format!(
            "{what}: a limit of 0 reads nothing; ask for 1 to READ_PAGE_SIZE_MAX \
             ({READ_PAGE_SIZE_MAX}) items"
        )));
    }
    Ok(limit.min(READ_PAGE_SIZE_MAX))
}

impl DynamoStore {
    /// Runs `query` until it has `count` items or the partition ends. Asks for one item
    /// more than a page holds, so a page that ends the list says so (no empty last page).
    async fn query(&self, query: Query<'_>, count: usize) -> Result<Items, StoreError> {
        let mut items: Vec<Item> = Vec::new();
        let mut start = query.start;
        for _ in 0..QUERY_CALLS_MAX {
            let wanted = count + 1 - items.len();
            let mut request = self
                .client()
                .query()
                .table_name(query.table)
                .key_condition_expression(query.key_condition)
                .consistent_read(true)
                .scan_index_forward(query.forward)
                .limit(i32::try_from(wanted).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            for (placeholder, name) in &query.names {
                request = request.expression_attribute_names(*placeholder, *name);
            }
            for (placeholder, value) in &query.values {
                request = request.expression_attribute_values(*placeholder, value.clone());
            }
            let output = request
                .send()
                .await
                .map_err(|error| sdk_error(query.doing, error))?;
            items.extend(output.items.unwrap_or_default());
            if items.len() > count {
                items.truncate(count);
                return Ok(Items { items, more: true });
            }
            match output.last_evaluated_key {
                // DynamoDB stopped at its 1 MB page (or at our limit): go on from there.
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok(Items { items, more: false }),
            }
        }
        Err(too_many_calls(query.doing))
    }

    /// Scans the idempotency table from `start`, like [`DynamoStore::query`].
    async fn scan_idempotency(
        &self,
        start: Option<Item>,
        count: usize,
    ) -> Result<Items, StoreError> {
        let doing = "listing idempotency records";
        let mut items: Vec<Item> = Vec::new();
        let mut start = start;
        for _ in 0..QUERY_CALLS_MAX {
            let wanted = count + 1 - items.len();
            let output = self
                .client()
                .scan()
                .table_name(self.tables().idempotency())
                .consistent_read(true)
                .limit(i32::try_from(wanted).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|error| sdk_error(doing, error))?;
            items.extend(output.items.unwrap_or_default());
            if items.len() > count {
                items.truncate(count);
                return Ok(Items { items, more: true });
            }
            match output.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok(Items { items, more: false }),
            }
        }
        Err(too_many_calls(doing))
    }

    /// A page of the store-internal or caller kind `kind` after the cursor's key.
    async fn query_kind(
        &self,
        doing: &str,
        list: List<'_>,
        kind: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Items, Option<String>), StoreError> {
        let count = page_size(limit, doing)?;
        let start = match cursor {
            None => None,
            Some(cursor) => Some(projection_key(kind, &cursor::decode(list, cursor)?)?),
        };
        let query = Query {
            doing,
            table: self.tables().projections(),
            key_condition: "#kind = :kind",
            names: vec![("#kind", attribute::KIND)],
            values: vec![(":kind", items::to_value("kind", &kind)?)],
            start,
            forward: true,
        };
        let page = self.query(query, count).await?;
        let last_key = if page.more {
            page.items
                .last()
                .map(|item| match item.get(attribute::KEY) {
                    Some(AttributeValue::S(key)) => Ok(cursor::encode(list, key)),
                    _ => Err(StoreError::Corrupt(format!(
                        "{doing}: an item of kind {kind:?} has no text key; stop and investigate"
                    ))),
                })
                .transpose()?
        } else {
            None
        };
        Ok((page, last_key))
    }

    pub(crate) async fn read_events(
        &self,
        stream_id: &str,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        let count = page_size(limit, "read_stream")?;
        check_key("stream id", stream_id)?;
        let query = Query {
            doing: "reading a stream",
            table: self.tables().events(),
            key_condition: "#stream_id = :stream_id AND #sequence >= :from",
            names: vec![
                ("#stream_id", attribute::STREAM_ID),
                ("#sequence", attribute::SEQUENCE),
            ],
            values: vec![
                (":stream_id", items::to_value("stream id", &stream_id)?),
                (":from", items::to_value("sequence", &from_sequence)?),
            ],
            start: None,
            forward: true,
        };
        let page = self.query(query, count).await?;
        page.items
            .into_iter()
            .map(|item| items::from_item::<EventItem>("event", item)?.into_stored_envelope())
            .collect()
    }

    pub(crate) async fn read_head(
        &self,
        stream_id: &str,
    ) -> Result<Option<EventEnvelope>, StoreError> {
        check_key("stream id", stream_id)?;
        let query = Query {
            doing: "reading a stream head",
            table: self.tables().events(),
            key_condition: "#stream_id = :stream_id",
            names: vec![("#stream_id", attribute::STREAM_ID)],
            values: vec![(":stream_id", items::to_value("stream id", &stream_id)?)],
            start: None,
            forward: false,
        };
        let page = self.query(query, 1).await?;
        page.items
            .into_iter()
            .next()
            .map(|item| items::from_item::<EventItem>("event", item)?.into_stored_envelope())
            .transpose()
    }

    pub(crate) async fn read_streams(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<String>, StoreError> {
        let (page, next) = self
            .query_kind("list_streams", List::Streams, kind::STREAM, cursor, limit)
            .await?;
        let items = page
            .items
            .into_iter()
            .map(|item| Ok(items::from_item::<StreamItem>("stream registry item", item)?.key))
            .collect::<Result<_, StoreError>>()?;
        Ok(Page { items, next })
    }

    pub(crate) async fn read_idempotency(
        &self,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        check_key("idempotency key", key)?;
        let output = self
            .client()
            .get_item()
            .table_name(self.tables().idempotency())
            .set_key(Some(items::to_item(
                "idempotency key",
                &IdempotencyKey { key },
            )?))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| sdk_error("reading an idempotency record", error))?;
        output
            .item
            .map(|item| {
                items::from_item::<IdempotencyItem>("idempotency record", item)?.into_record()
            })
            .transpose()
    }

    pub(crate) async fn read_idempotency_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<IdempotencyRecord>, StoreError> {
        let count = page_size(limit, "list_idempotency")?;
        let start = match cursor {
            None => None,
            Some(cursor) => {
                let key = cursor::decode(List::Idempotency, cursor)?;
                Some(items::to_item(
                    "idempotency key",
                    &IdempotencyKey { key: &key },
                )?)
            }
        };
        let page = self.scan_idempotency(start, count).await?;
        let records: Vec<IdempotencyRecord> = page
            .items
            .into_iter()
            .map(|item| {
                items::from_item::<IdempotencyItem>("idempotency record", item)?.into_record()
            })
            .collect::<Result<_, StoreError>>()?;
        let next = if page.more {
            records
                .last()
                .map(|record| cursor::encode(List::Idempotency, &record.key))
        } else {
            None
        };
        Ok(Page {
            items: records,
            next,
        })
    }

    pub(crate) async fn read_projection(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<Projection>, StoreError> {
        check_kind(kind)?;
        check_key("projection key", key)?;
        let output = self
            .client()
            .get_item()
            .table_name(self.tables().projections())
            .set_key(Some(projection_key(kind, key)?))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| sdk_error("reading a projection", error))?;
        output
            .item
            .map(|item| items::from_item::<ProjectionItem>("projection", item)?.into_projection())
            .transpose()
    }

    pub(crate) async fn read_projections(
        &self,
        kind: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Projection>, StoreError> {
        check_kind(kind)?;
        let (page, next) = self
            .query_kind(
                "list_projections",
                List::Projections { kind },
                kind,
                cursor,
                limit,
            )
            .await?;
        let items = page
            .items
            .into_iter()
            .map(|item| items::from_item::<ProjectionItem>("projection", item)?.into_projection())
            .collect::<Result<_, StoreError>>()?;
        Ok(Page { items, next })
    }

    pub(crate) async fn read_pending_work(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<PendingWork>, StoreError> {
        let (page, next) = self
            .query_kind("pending_work", List::Work, kind::WORK, cursor, limit)
            .await?;
        let items = page
            .items
            .into_iter()
            .map(|item| {
                let (item, added_at_ms) =
                    items::from_item::<WorkRow>("work item", item)?.into_parts()?;
                Ok(PendingWork { item, added_at_ms })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Page { items, next })
    }

    pub(crate) async fn read_rejects(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RejectRecord>, StoreError> {
        let (page, next) = self
            .query_kind("list_rejects", List::Rejects, kind::REJECT, cursor, limit)
            .await?;
        let items = page
            .items
            .into_iter()
            .map(|item| items::from_item::<RejectItem>("reject", item)?.into_record())
            .collect::<Result<_, StoreError>>()?;
        Ok(Page { items, next })
    }
}

fn too_many_calls(doing: &str) -> StoreError {
    StoreError::Unavailable {
        message: format!(
            "{doing}: DynamoDB did not finish one page within QUERY_CALLS_MAX ({QUERY_CALLS_MAX}) \
             calls; retry later"
        ),
        source: None,
    }
}
