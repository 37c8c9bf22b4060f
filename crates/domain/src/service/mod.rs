//! Domain services: the use cases, written against ports only. Handlers and commands translate
//! their input into calls of these services and their answers back; they hold no rule.

mod context;
mod credentials;
pub mod cutover;
mod shown;
mod sign_in;
mod signing;
mod users;

pub use context::RequestContext;
pub use credentials::{status_of, CredentialService, CredentialTest, TestOutcome, TestResult};
pub use cutover::CutoverGate;
pub use sign_in::SignInService;
pub use signing::{SignOrder, Signing};
pub use users::{CapabilityChange, UserPorts, UserService};
