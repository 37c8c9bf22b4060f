//! `user-service users create`, `users token`, `users set-password`, `grant` and `revoke`:
//! operators' account management, through the domain's services like every other way of
//! creating a user or setting a password.

use std::io::Write;

use secrecy::{ExposeSecret, SecretString};
use user_service_domain::{
    Capability, CapabilityChange, DomainError, Email, NewUser, Principal, Unique, UserId,
};

use super::args::UsersCommand;
use super::context::{CommandError, Context};

/// Runs a `users` command.
pub(super) async fn run(
    context: &mut Context<'_>,
    command: UsersCommand,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    match command {
        UsersCommand::Create {
            email,
            password,
            operator,
            print_token,
        } => create(context, &email, password, operator, print_token, out).await,
        UsersCommand::Token { user } => token(context, &user, out).await,
        UsersCommand::SetPassword {
            user,
            password,
            password_stdin,
        } => {
            let password = match password {
                Some(password) => password,
                None if password_stdin => read_password_line()?,
                None => return Err(CommandError("give --password or --password-stdin".into())),
            };
            set_password(context, &user, &password, out).await
        }
    }
}

/// Prints a new access token for an existing user, alone on one line.
async fn token(
    context: &mut Context<'_>,
    user: &str,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let settings = context.settings;
    let tokens = context
        .secrets()
        .token_codec(settings)
        .map_err(CommandError)?;
    let id = find(context, user).await?;
    let token = tokens.issue_access(&Principal::User(id));
    writeln!(out, "{}", token.expose_secret())?;
    Ok(())
}

/// The first line of standard input, without its line ending.
fn read_password_line() -> Result<SecretString, CommandError> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = SecretString::from(line.trim_end_matches(['\r', '\n']).to_owned());
    zeroize::Zeroize::zeroize(&mut line);
    Ok(password)
}

/// Sets the password of `user` (an id or an e-mail address) and revokes all its sessions.
async fn set_password(
    context: &mut Context<'_>,
    user: &str,
    password: &SecretString,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let id = find(context, user).await?;
    let sign_in = &context.services().await?.sign_in;
    let revoked = sign_in
        .set_password(id, password)
        .await
        .map_err(|error| match error {
            DomainError::PasswordPolicy(violation) => CommandError(violation.0),
            other => other.into(),
        })?;
    log::warn!(target: "operator", "password of user {id} set from the command line; {revoked} sessions revoked");
    writeln!(
        out,
        "password of user {id} set; {revoked} sessions revoked (its refresh tokens no longer work)"
    )?;
    Ok(())
}

/// Creates an active user (an operator with `--operator`); prints its id, and with
/// `--print-token` an access token alone on the last line.
pub(super) async fn create(
    context: &mut Context<'_>,
    email: &str,
    password: Option<SecretString>,
    operator: bool,
    print_token: bool,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let email = Email::parse(email).map_err(|e| CommandError(e.to_string()))?;
    // Read before anything is written: a missing JWT secret must not leave a user behind.
    let tokens = if print_token {
        let settings = context.settings;
        Some(
            context
                .secrets()
                .token_codec(settings)
                .map_err(CommandError)?,
        )
    } else {
        None
    };
    let mut new_user = NewUser::with_email(email);
    new_user.is_active = true;
    let users = &context.services().await?.users;
    let created = if operator {
        users.create_operator(new_user, password.as_ref()).await
    } else {
        users.create(new_user, password.as_ref()).await
    };
    let user = created.map_err(|error| match error {
        DomainError::Duplicate(Unique::Email) => CommandError("Email already registered".into()),
        DomainError::PasswordPolicy(violation) => CommandError(violation.0),
        other => other.into(),
    })?;
    writeln!(out, "{}", user.id)?;
    if let Some(tokens) = tokens {
        let token = tokens.issue_access(&Principal::User(user.id));
        writeln!(out, "{}", token.expose_secret())?;
    }
    Ok(())
}

/// `grant` / `revoke`: `user` is an id or an e-mail address.
pub(super) async fn set_capability(
    context: &mut Context<'_>,
    user: &str,
    capability: &str,
    granted: bool,
    force: bool,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let capability = Capability::parse(capability)
        .ok_or_else(|| CommandError(format!("invalid capability code: {capability:?}")))?;
    if !capability.is_known() && !force {
        return Err(CommandError(format!(
            "unknown capability {capability} (this service knows {}); pass --force to grant it for another service",
            Capability::KNOWN.join(", ")
        )));
    }
    let id = find(context, user).await?;
    let users = &context.services().await?.users;
    let change = users.set_capability(id, &capability, granted).await?;
    let line = match (granted, change) {
        (true, CapabilityChange::Changed) => format!("granted {capability} to user {id}"),
        (true, CapabilityChange::Unchanged) => {
            format!("user {id} already holds {capability}: nothing changed")
        }
        (false, CapabilityChange::Changed) => format!("revoked {capability} from user {id}"),
        (false, CapabilityChange::Unchanged) => {
            format!("user {id} does not hold {capability}: nothing changed")
        }
    };
    writeln!(out, "{line}")?;
    Ok(())
}

/// The user named by an id or an e-mail address.
pub(super) async fn find(context: &mut Context<'_>, user: &str) -> Result<UserId, CommandError> {
    let users = &context.services().await?.users;
    let not_found = || CommandError(format!("user not found: {user}"));
    match UserId::parse_id(user) {
        Some(id) => match users.get(id).await {
            Ok(found) => Ok(found.id),
            Err(DomainError::NotFound(_)) => Err(not_found()),
            Err(other) => Err(other.into()),
        },
        None => {
            let email = Email::parse(user).map_err(|_| not_found())?;
            users
                .find_by_email(&email)
                .await?
                .map(|u| u.id)
                .ok_or_else(not_found)
        }
    }
}
