//! `--bus NAME`: the CLI runs every stage in process and publishes nothing, unless a bus is
//! named — then every commit is also announced on that EventBridge bus, as the `fanout`
//! function announces commits on AWS (pointers and a small summary, never decision data).

use opx_app::ports::{Publisher, StoreError};
use opx_domain::event::EventEnvelope;
use opx_publisher_eventbridge::EventBridgePublisher;

/// Where the CLI announces its commits.
pub enum CliPublisher {
    /// Nowhere (the default): the CLI drains its own work queue.
    Nothing,
    /// An EventBridge bus, through the standard AWS configuration chain.
    EventBridge(EventBridgePublisher),
}

impl CliPublisher {
    /// The publisher for `--bus`: none without a name.
    pub async fn open(bus: Option<&str>) -> CliPublisher {
        match bus {
            Some(name) => CliPublisher::EventBridge(EventBridgePublisher::connect(name).await),
            None => CliPublisher::Nothing,
        }
    }
}

impl Publisher for CliPublisher {
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), StoreError> {
        match self {
            CliPublisher::Nothing => Ok(()),
            CliPublisher::EventBridge(publisher) => publisher.publish(events).await,
        }
    }

    fn delivers(&self) -> bool {
        match self {
            CliPublisher::Nothing => false,
            CliPublisher::EventBridge(publisher) => publisher.delivers(),
        }
    }
}
