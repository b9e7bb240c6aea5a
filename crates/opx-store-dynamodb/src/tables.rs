//! Creating the three tables, idempotently, with the key schema the deployment declares.

use crate::error::sdk_error;
use crate::items::attribute;
use crate::{DynamoStore, TABLE_ACTIVE_WAIT_MS_MAX, TABLE_POLL_INTERVAL_MS};
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType, TableDescription, TableStatus,
};
use opx_app::ports::StoreError;
use std::time::Duration;

/// One key attribute: name, type, role.
type KeyAttribute = (&'static str, ScalarAttributeType, KeyType);

/// What one table must look like.
pub(crate) struct TableSpec {
    pub name: String,
    pub keys: Vec<KeyAttribute>,
    /// Whether the table has a stream of new images (the events table: fan-out reads it).
    pub new_image_stream: bool,
}

impl DynamoStore {
    /// The tables this store uses, as they must be declared: events (`stream_id` S,
    /// `sequence` N, stream of new images), idempotency (`key` S), projections (`kind` S,
    /// `key` S). All on-demand.
    pub(crate) fn table_specs(&self) -> Vec<TableSpec> {
        let tables = self.tables();
        vec![
            TableSpec {
                name: tables.events().to_string(),
                keys: vec![
                    (attribute::STREAM_ID, ScalarAttributeType::S, KeyType::Hash),
                    (attribute::SEQUENCE, ScalarAttributeType::N, KeyType::Range),
                ],
                new_image_stream: true,
            },
            TableSpec {
                name: tables.idempotency().to_string(),
                keys: vec![(attribute::KEY, ScalarAttributeType::S, KeyType::Hash)],
                new_image_stream: false,
            },
            TableSpec {
                name: tables.projections().to_string(),
                keys: vec![
                    (attribute::KIND, ScalarAttributeType::S, KeyType::Hash),
                    (attribute::KEY, ScalarAttributeType::S, KeyType::Range),
                ],
                new_image_stream: false,
            },
        ]
    }

    /// Creates the three tables (on-demand billing; the events table with a stream of new
    /// images) and waits until all are `ACTIVE`. Idempotent: a table that exists with the
    /// right key schema is kept as it is; one with another key schema is refused
    /// ([`StoreError::Invalid`]), never changed.
    pub async fn create_tables(&self) -> Result<(), StoreError> {
        let specs = self.table_specs();
        for spec in &specs {
            self.create_table(spec).await?;
        }
        for spec in &specs {
            self.wait_until_active(spec).await?;
        }
        Ok(())
    }

    async fn create_table(&self, spec: &TableSpec) -> Result<(), StoreError> {
        let mut request = self
            .client()
            .create_table()
            .table_name(&spec.name)
            .billing_mode(BillingMode::PayPerRequest);
        for (name, attribute_type, key_type) in &spec.keys {
            request = request
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(*name)
                        .attribute_type(attribute_type.clone())
                        .build()
                        .map_err(built)?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(*name)
                        .key_type(key_type.clone())
                        .build()
                        .map_err(built)?,
                );
        }
        if spec.new_image_stream {
            request = request.stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewImage)
                    .build()
                    .map_err(built)?,
            );
        }
        match request.send().await {
            Ok(_) => {
                tracing::info!(table = %spec.name, "created DynamoDB table");
                Ok(())
            }
            Err(error)
                if matches!(
                    error.as_service_error(),
                    Some(CreateTableError::ResourceInUseException(_))
                ) =>
            {
                // It exists (or is being created by a concurrent `init`): check its shape.
                let description = self.describe(&spec.name).await?;
                check_shape(spec, &description)
            }
            Err(error) => Err(sdk_error(&format!("creating table {}", spec.name), error)),
        }
    }

    async fn describe(&self, table: &str) -> Result<TableDescription, StoreError> {
        let output = self
            .client()
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|error| sdk_error(&format!("describing table {table}"), error))?;
        output.table.ok_or_else(|| StoreError::Unavailable {
            message: format!("DynamoDB described table {table} without a description; retry"),
            source: None,
        })
    }

    async fn wait_until_active(&self, spec: &TableSpec) -> Result<(), StoreError> {
        let polls = TABLE_ACTIVE_WAIT_MS_MAX / TABLE_POLL_INTERVAL_MS;
        for _ in 0..=polls {
            let description = self.describe(&spec.name).await?;
            match description.table_status() {
                Some(TableStatus::Active) => return Ok(()),
                Some(TableStatus::Creating | TableStatus::Updating) | None => {
                    tokio::time::sleep(Duration::from_millis(TABLE_POLL_INTERVAL_MS)).await;
                }
                Some(other) => {
                    return Err(StoreError::Unavailable {
                        message: format!(
                            "table {} is {other:?}, not ACTIVE; wait for it or use another \
                             prefix",
                            spec.name
                        ),
                        source: None,
                    })
                }
            }
        }
        Err(StoreError::Unavailable {
            message: format!(
                "table {} did not become ACTIVE within TABLE_ACTIVE_WAIT_MS_MAX \
                 ({TABLE_ACTIVE_WAIT_MS_MAX} ms); run init again later",
                spec.name
            ),
            source: None,
        })
    }
}

/// An existing table must have exactly the key schema this store uses, and the events
/// table a stream of new images.
pub(crate) fn check_shape(
    spec: &TableSpec,
    description: &TableDescription,
) -> Result<(), StoreError> {
    let mut found: Vec<String> = description
        .key_schema()
        .iter()
        .map(|element| {
            let name = element.attribute_name();
            let attribute_type = description
                .attribute_definitions()
                .iter()
                .find(|definition| definition.attribute_name() == name)
                .map_or("?".to_string(), |definition| {
                    definition.attribute_type().as_str().to_string()
                });
            format!("{name} {attribute_type} {}", element.key_type().as_str())
        })
        .collect();
    let mut wanted: Vec<String> = spec
        .keys
        .iter()
        .map(|(name, attribute_type, key_type)| {
            format!("{name} {} {}", attribute_type.as_str(), key_type.as_str())
        })
        .collect();
    found.sort();
    wanted.sort();
    if found != wanted {
        return Err(StoreError::Invalid(format!(
            "table {} exists with key schema [{}], but opx needs [{}]; choose another table \
             prefix, or remove the table if it is not opx's",
            spec.name,
            found.join(", "),
            wanted.join(", ")
        )));
    }
    if spec.new_image_stream {
        let stream = description.stream_specification();
        let enabled = stream.is_some_and(|stream| stream.stream_enabled());
        let view = stream.and_then(StreamSpecification::stream_view_type);
        let fits = matches!(
            view,
            Some(StreamViewType::NewImage | StreamViewType::NewAndOldImages)
        );
        if !enabled || !fits {
            return Err(StoreError::Invalid(format!(
                "table {} has no stream of new images (found {view:?}, enabled: {enabled}); \
                 fan-out reads committed events from it: enable a NEW_IMAGE stream on the table",
                spec.name
            )));
        }
    }
    Ok(())
}

fn built(error: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Invalid(format!(
        "the DynamoDB store built an incomplete table definition ({error}); this is a bug in \
         opx-store-dynamodb: report it"
    ))
}
