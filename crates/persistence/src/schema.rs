//! The tables, declared once for both backends (see [`crate::sql_types`] for the two column types
//! whose storage differs). Identifiers are `BIGINT` on both: the PostgreSQL migration widens the
//! Python service's `integer` columns in place.

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::UtcTimestamp;

    /// User profiles.
    users (id) {
        id -> BigInt,
        email -> Text,
        password_hash -> Nullable<Text>,
        first_name -> Nullable<Text>,
        last_name -> Nullable<Text>,
        phone -> Nullable<Text>,
        marketing_opt_in -> Bool,
        is_active -> Bool,
        is_superuser -> Bool,
        deleted_at -> Nullable<UtcTimestamp>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::JsonDocument;

    /// One JSON object of preferences per user.
    user_preferences (user_id) {
        user_id -> BigInt,
        preferences -> JsonDocument,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::UtcTimestamp;

    /// Broker API credentials, ciphertext only.
    user_broker_credentials (id) {
        id -> BigInt,
        user_id -> BigInt,
        broker -> Text,
        label -> Nullable<Text>,
        api_key_encrypted -> Nullable<Text>,
        api_secret_encrypted -> Nullable<Text>,
        key_id -> Nullable<Text>,
        binding -> Nullable<Text>,
        version -> BigInt,
        last_test_status -> Nullable<Text>,
        last_tested_at -> Nullable<UtcTimestamp>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
        trading_enabled -> Bool,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{JsonDocument, UtcTimestamp};

    /// Onboarding progress per user.
    onboarding_progress (user_id) {
        user_id -> BigInt,
        current_step -> Text,
        completed_steps -> JsonDocument,
        restarted_at -> Nullable<UtcTimestamp>,
        created_at -> UtcTimestamp,
        updated_at -> UtcTimestamp,
    }
}

diesel::table! {
    /// Explicit capability grants (`true`) and revocations (`false`).
    user_capabilities (user_id, capability) {
        user_id -> BigInt,
        capability -> Text,
        granted -> Bool,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::UtcTimestamp;

    /// Who did what to whose credential; never a value.
    credential_audit_events (id) {
        id -> BigInt,
        occurred_at -> UtcTimestamp,
        actor_id -> Nullable<BigInt>,
        target_user_id -> BigInt,
        action -> Text,
        broker -> Nullable<Text>,
        outcome -> Text,
        key_id -> Nullable<Text>,
        request_id -> Nullable<Text>,
        actor_service -> Nullable<Text>,
        detail -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::UtcTimestamp;

    /// The cut-over mode: one row (`id` 1) for the whole database.
    cutover_mode (id) {
        id -> SmallInt,
        open -> Bool,
        changed_at -> UtcTimestamp,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::UtcTimestamp;

    /// Sign-in sessions: one row per refresh token issued (`jti`), grouped by family (`fam`).
    auth_sessions (id) {
        id -> Text,
        family -> Text,
        user_id -> BigInt,
        created_at -> UtcTimestamp,
        expires_at -> UtcTimestamp,
        replaced_at -> Nullable<UtcTimestamp>,
        revoked_at -> Nullable<UtcTimestamp>,
    }
}

diesel::joinable!(user_preferences -> users (user_id));
diesel::joinable!(auth_sessions -> users (user_id));
diesel::joinable!(user_broker_credentials -> users (user_id));
diesel::joinable!(onboarding_progress -> users (user_id));
diesel::joinable!(user_capabilities -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    user_preferences,
    user_broker_credentials,
    onboarding_progress,
    user_capabilities,
    credential_audit_events,
    cutover_mode,
    auth_sessions,
);
