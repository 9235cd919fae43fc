//! Organizations, organization memberships and Directory Sync users, with the rules and events WorkOS documents
//! for them (docs/workos.md §5, §6):
//!
//! - creating a membership makes it `active` (or reactivates an `inactive` one for the same user and
//!   organization); deactivating makes it `inactive` and revokes every active session of the user; deactivating
//!   an inactive or reactivating an active membership changes nothing and emits nothing; pending memberships can be
//!   neither;
//! - deleting a user revokes their sessions, deletes their memberships and then the user, emitting
//!   `session.revoked`, `organization_membership.deleted` and `user.deleted` in that order;
//! - deleting an organization deletes its memberships with it, emitting only `organization.deleted`;
//! - directory users belong to an organization's directory and are changed the way an identity provider changes
//!   them over SCIM (there is no WorkOS API for that), emitting `dsync.*` events: turning a directory user
//!   `inactive` is how most providers deprovision. With directory provisioning (on unless a test turns it off),
//!   WorkOS carries that to the person's membership in the directory's organization (docs/workos.md §5.3, docs
//!   `/authkit/directory-provisioning`): an active member deprovisioned (or removed from the directory) becomes
//!   `inactive` with the default role and loses every session, a pending one is deleted, and one made active again
//!   in the directory is reactivated. Such a membership is `directory_managed`.
//!
//! Every change bumps the object's `updated_at` and records its event, under the store's one lock, so the history
//! is exactly the order of the changes. The changes one action causes (a deletion's revoked sessions, say) are one
//! cascade and share one time, as they can at WorkOS.

use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::events::timestamp;
use super::store::Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandInOrganization {
    pub id: String,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl StandInOrganization {
    pub fn to_value(&self) -> Value {
        json!({
            "object": "organization", "id": self.id, "name": self.name, "domains": [], "metadata": {},
            "external_id": null, "created_at": timestamp(self.created_at), "updated_at": timestamp(self.updated_at),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandInMembershipStatus {
    Active,
    Inactive,
    Pending,
}

impl StandInMembershipStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
            Self::Pending => "pending",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim() {
            "active" => Some(Self::Active),
            "inactive" => Some(Self::Inactive),
            "pending" => Some(Self::Pending),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandInMembership {
    pub id: String,
    pub user_id: String,
    pub organization_id: String,
    pub status: StandInMembershipStatus,
    /// Role slugs, the first being the main one (`role`).
    pub roles: Vec<String>,
    pub directory_managed: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl StandInMembership {
    /// The event payload (no `organization_name`: events do not carry it, §5.3).
    pub fn to_value(&self) -> Value {
        let main = self.roles.first().cloned().unwrap_or_else(|| DEFAULT_ROLE.to_owned());
        json!({
            "object": "organization_membership", "id": self.id, "user_id": self.user_id,
            "organization_id": self.organization_id, "status": self.status.as_str(),
            "role": { "slug": main }, "roles": self.roles.iter().map(|slug| json!({ "slug": slug })).collect::<Vec<_>>(),
            "custom_attributes": {}, "directory_managed": self.directory_managed,
            "created_at": timestamp(self.created_at), "updated_at": timestamp(self.updated_at),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandInDirectoryUser {
    pub id: String,
    pub directory_id: String,
    pub organization_id: String,
    pub email: String,
    pub state: String,
    pub groups: Vec<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl StandInDirectoryUser {
    pub fn to_value(&self) -> Value {
        json!({
            "object": "directory_user", "id": self.id, "directory_id": self.directory_id,
            "organization_id": self.organization_id, "idp_id": self.id.trim_start_matches("directory_user_"),
            "email": self.email, "state": self.state, "custom_attributes": {}, "raw_attributes": {},
            "created_at": timestamp(self.created_at), "updated_at": timestamp(self.updated_at),
        })
    }

    fn group_value(&self, group: &str) -> Value {
        json!({
            "object": "directory_group", "id": format!("directory_group_{}", slug(group)),
            "idp_id": slug(group), "directory_id": self.directory_id, "organization_id": self.organization_id,
            "name": group, "created_at": timestamp(self.created_at), "updated_at": timestamp(self.created_at),
        })
    }
}

/// The role a membership gets when none is named, as in a new WorkOS environment.
pub const DEFAULT_ROLE: &str = "member";

/// Why a change was refused, with the status and `{"code","message"}` WorkOS answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandInRefusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl StandInRefusal {
    fn not_found(what: &str, id: &str) -> Self {
        Self { status: 404, code: "entity_not_found", message: format!("{what} not found: '{id}'.") }
    }

    fn bad_request(code: &'static str, message: &str) -> Self {
        Self { status: 400, code, message: message.to_owned() }
    }
}

fn slug(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

impl Store {
    pub fn organization(&self, id: &str) -> Option<&StandInOrganization> {
        self.organizations.iter().find(|organization| organization.id == id)
    }

    pub fn organization_name(&self, id: &str) -> Option<&str> {
        self.organization(id).map(|organization| organization.name.as_str())
    }

    pub fn is_known_organization(&self, id: &str) -> bool {
        self.organization(id).is_some()
    }

    pub fn organizations(&self) -> &[StandInOrganization] {
        &self.organizations
    }

    /// The organizations `user_id` is an active member of, oldest membership first: the first is where a plain
    /// sign-in lands.
    pub fn active_organizations(&self, user_id: &str) -> Vec<String> {
        self.memberships
            .iter()
            .filter(|m| m.user_id == user_id && m.status == StandInMembershipStatus::Active)
            .map(|m| m.organization_id.clone())
            .collect()
    }

    pub fn membership(&self, id: &str) -> Option<&StandInMembership> {
        self.memberships.iter().find(|membership| membership.id == id)
    }

    pub fn memberships(&self) -> &[StandInMembership] {
        &self.memberships
    }

    pub fn create_organization(&mut self, name: &str) -> StandInOrganization {
        self.create_organization_with_id(&format!("org_{}", Uuid::new_v4().simple()), name)
    }

    pub(super) fn create_organization_with_id(&mut self, id: &str, name: &str) -> StandInOrganization {
        let now = self.events.tick();
        let organization =
            StandInOrganization { id: id.to_owned(), name: name.to_owned(), created_at: now, updated_at: now };
        self.organizations.push(organization.clone());
        self.events.emit("organization.created", organization.to_value());
        organization
    }

    pub fn rename_organization(&mut self, id: &str, name: &str) -> Result<StandInOrganization, StandInRefusal> {
        let now = self.events.tick();
        let organization = self
            .organizations
            .iter_mut()
            .find(|organization| organization.id == id)
            .ok_or_else(|| StandInRefusal::not_found("Organization", id))?;
        organization.name = name.to_owned();
        organization.updated_at = now;
        let organization = organization.clone();
        self.events.emit("organization.updated", organization.to_value());
        Ok(organization)
    }

    pub fn delete_organization(&mut self, id: &str) -> Result<(), StandInRefusal> {
        let index = self
            .organizations
            .iter()
            .position(|organization| organization.id == id)
            .ok_or_else(|| StandInRefusal::not_found("Organization", id))?;
        let organization = self.organizations.remove(index);
        // Its memberships go with it and drop out of every listing, without events of their own (none are
        // documented: docs/workos.md §6.1), so the app must not need them.
        self.memberships.retain(|membership| membership.organization_id != id);
        self.events.emit("organization.deleted", organization.to_value());
        Ok(())
    }

    /// `POST /user_management/organization_memberships`: a new active membership, or the user's inactive one in
    /// that organization reactivated (201 either way).
    pub fn add_membership(
        &mut self,
        user_id: &str,
        organization_id: &str,
        roles: &[String],
    ) -> Result<StandInMembership, StandInRefusal> {
        if self.user(user_id).is_none() {
            return Err(StandInRefusal::not_found("User", user_id));
        }
        if !self.is_known_organization(organization_id) {
            return Err(StandInRefusal::not_found("Organization", organization_id));
        }
        let existing =
            self.memberships.iter().position(|m| m.user_id == user_id && m.organization_id == organization_id);
        if let Some(index) = existing {
            return match self.memberships[index].status {
                StandInMembershipStatus::Inactive => self.set_status(index, StandInMembershipStatus::Active),
                StandInMembershipStatus::Pending => Err(StandInRefusal::bad_request(
                    "cannot_reactivate_pending_organization_membership",
                    "A pending membership cannot be reactivated.",
                )),
                StandInMembershipStatus::Active => Ok(self.memberships[index].clone()),
            };
        }
        let now = self.events.tick();
        let roles = if roles.is_empty() { vec![DEFAULT_ROLE.to_owned()] } else { roles.to_vec() };
        let membership = StandInMembership {
            id: format!("om_{}", Uuid::new_v4().simple()),
            user_id: user_id.to_owned(),
            organization_id: organization_id.to_owned(),
            status: StandInMembershipStatus::Active,
            roles,
            directory_managed: false,
            created_at: now,
            updated_at: now,
        };
        self.memberships.push(membership.clone());
        self.events.emit("organization_membership.created", membership.to_value());
        Ok(membership)
    }

    pub fn set_membership_roles(&mut self, id: &str, roles: &[String]) -> Result<StandInMembership, StandInRefusal> {
        let index = self.membership_index(id)?;
        let now = self.events.tick();
        let membership = &mut self.memberships[index];
        membership.roles = if roles.is_empty() { vec![DEFAULT_ROLE.to_owned()] } else { roles.to_vec() };
        membership.updated_at = now;
        let membership = membership.clone();
        self.events.emit("organization_membership.updated", membership.to_value());
        Ok(membership)
    }

    /// `PUT …/{id}/deactivate`: `inactive`, and "revokes all active sessions" of the user (§6.2), in one cascade.
    pub fn deactivate_membership(&mut self, id: &str) -> Result<StandInMembership, StandInRefusal> {
        self.cascade(|store| store.deactivate_membership_now(id))
    }

    fn deactivate_membership_now(&mut self, id: &str) -> Result<StandInMembership, StandInRefusal> {
        let index = self.membership_index(id)?;
        match self.memberships[index].status {
            StandInMembershipStatus::Inactive => Ok(self.memberships[index].clone()),
            StandInMembershipStatus::Pending => Err(StandInRefusal::bad_request(
                "cannot_deactivate_pending_organization_membership",
                "A pending membership cannot be deactivated.",
            )),
            StandInMembershipStatus::Active => {
                let membership = self.set_status(index, StandInMembershipStatus::Inactive)?;
                self.revoke_sessions_of(&membership.user_id);
                Ok(membership)
            }
        }
    }

    pub fn reactivate_membership(&mut self, id: &str) -> Result<StandInMembership, StandInRefusal> {
        let index = self.membership_index(id)?;
        match self.memberships[index].status {
            StandInMembershipStatus::Active => Ok(self.memberships[index].clone()),
            StandInMembershipStatus::Pending => Err(StandInRefusal::bad_request(
                "cannot_reactivate_pending_organization_membership",
                "A pending membership cannot be reactivated.",
            )),
            StandInMembershipStatus::Inactive => self.set_status(index, StandInMembershipStatus::Active),
        }
    }

    pub fn delete_membership(&mut self, id: &str) -> Result<(), StandInRefusal> {
        let index = self.membership_index(id)?;
        let membership = self.memberships.remove(index);
        self.events.emit("organization_membership.deleted", membership.to_value());
        Ok(())
    }

    /// `DELETE /user_management/users/{id}`: sessions revoked, memberships deleted, then the user (§6.4), in one
    /// cascade.
    pub fn delete_user(&mut self, id: &str) -> Result<(), StandInRefusal> {
        self.cascade(|store| store.delete_user_now(id))
    }

    fn delete_user_now(&mut self, id: &str) -> Result<(), StandInRefusal> {
        let index = self
            .users
            .iter()
            .position(|user| user.seed.id == id)
            .ok_or_else(|| StandInRefusal::not_found("User", id))?;
        self.revoke_sessions_of(id);
        let memberships: Vec<String> =
            self.memberships.iter().filter(|m| m.user_id == id).map(|m| m.id.clone()).collect();
        for membership in memberships {
            let _ = self.delete_membership(&membership);
        }
        let mut user = self.users.remove(index);
        user.updated_at = self.events.tick();
        self.events.emit("user.deleted", user.to_value());
        Ok(())
    }

    /// Runs one action whose changes are a cascade: every change and event in it has one time (see `events.rs`).
    fn cascade<T>(&mut self, action: impl FnOnce(&mut Self) -> T) -> T {
        self.events.begin_cascade();
        let outcome = action(self);
        self.events.end_cascade();
        outcome
    }

    fn revoke_sessions_of(&mut self, user_id: &str) {
        let mut active: Vec<(OffsetDateTime, String)> = self
            .sessions
            .values()
            .filter(|session| session.user_id == user_id && !session.ended)
            .map(|session| (session.created_at, session.id.clone()))
            .collect();
        active.sort();
        for (_, session_id) in active {
            let _ = self.end_session(&session_id);
        }
    }

    fn membership_index(&self, id: &str) -> Result<usize, StandInRefusal> {
        self.memberships
            .iter()
            .position(|membership| membership.id == id)
            .ok_or_else(|| StandInRefusal::not_found("Organization membership", id))
    }

    fn set_status(
        &mut self,
        index: usize,
        status: StandInMembershipStatus,
    ) -> Result<StandInMembership, StandInRefusal> {
        let now = self.events.tick();
        let membership = &mut self.memberships[index];
        membership.status = status;
        membership.updated_at = now;
        let membership = membership.clone();
        self.events.emit("organization_membership.updated", membership.to_value());
        Ok(membership)
    }

    // ---- Directory Sync: what an identity provider does over SCIM ----------------------------------------------

    /// A person provisioned into the organization's directory (`dsync.user.created`, state `active`).
    pub fn provision_directory_user(
        &mut self,
        organization_id: &str,
        email: &str,
    ) -> Result<StandInDirectoryUser, StandInRefusal> {
        if !self.is_known_organization(organization_id) {
            return Err(StandInRefusal::not_found("Organization", organization_id));
        }
        let now = self.events.tick();
        let user = StandInDirectoryUser {
            id: format!("directory_user_{}", Uuid::new_v4().simple()),
            directory_id: format!("directory_{}", slug(organization_id)),
            organization_id: organization_id.to_owned(),
            email: email.to_owned(),
            state: "active".to_owned(),
            groups: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        self.directory_users.push(user.clone());
        self.events.emit("dsync.user.created", user.to_value());
        Ok(user)
    }

    /// The provider changes a person's state (`dsync.user.updated` with `previous_attributes`): `inactive` or
    /// `suspended` is how most providers deprovision. With directory provisioning the membership follows, in the
    /// same cascade.
    pub fn set_directory_user_state(&mut self, id: &str, state: &str) -> Result<StandInDirectoryUser, StandInRefusal> {
        self.cascade(|store| store.set_directory_user_state_now(id, state))
    }

    fn set_directory_user_state_now(&mut self, id: &str, state: &str) -> Result<StandInDirectoryUser, StandInRefusal> {
        let now = self.events.tick();
        let user = self
            .directory_users
            .iter_mut()
            .find(|user| user.id == id)
            .ok_or_else(|| StandInRefusal::not_found("Directory user", id))?;
        let previous = std::mem::replace(&mut user.state, state.to_owned());
        user.updated_at = now;
        let user = user.clone();
        let mut data = user.to_value();
        data["previous_attributes"] = json!({ "state": previous });
        self.events.emit("dsync.user.updated", data);
        match (previous == "active", user.state == "active") {
            (true, false) => self.deprovision_member(&user),
            (false, true) => self.reprovision_member(&user),
            _ => {}
        }
        Ok(user)
    }

    /// The provider deletes the person (`dsync.user.deleted`): with directory provisioning, deprovisioned as by an
    /// `inactive` state, in the same cascade (a member already deprovisioned is left as is).
    pub fn remove_directory_user(&mut self, id: &str) -> Result<(), StandInRefusal> {
        self.cascade(|store| store.remove_directory_user_now(id))
    }

    fn remove_directory_user_now(&mut self, id: &str) -> Result<(), StandInRefusal> {
        let index = self
            .directory_users
            .iter()
            .position(|user| user.id == id)
            .ok_or_else(|| StandInRefusal::not_found("Directory user", id))?;
        let mut user = self.directory_users.remove(index);
        user.updated_at = self.events.tick();
        self.events.emit("dsync.user.deleted", user.to_value());
        if user.state == "active" {
            self.deprovision_member(&user);
        }
        Ok(())
    }

    /// The index of the membership WorkOS's directory provisioning ties to a directory user: the AuthKit user with
    /// the same email, in the directory's organization. `None` without directory provisioning.
    fn provisioned_membership(&self, directory_user: &StandInDirectoryUser) -> Option<usize> {
        if !self.directory_provisioning {
            return None;
        }
        let user_id = self.user_by_email(&directory_user.email)?.seed.id.clone();
        self.memberships
            .iter()
            .position(|m| m.user_id == user_id && m.organization_id == directory_user.organization_id)
    }

    /// "Active member deprovisioned": the membership `inactive`, its role reset to the default, every session of
    /// the user revoked; "pending member deprovisioned": the membership deleted (docs/workos.md §5.3).
    fn deprovision_member(&mut self, directory_user: &StandInDirectoryUser) {
        let Some(index) = self.provisioned_membership(directory_user) else { return };
        match self.memberships[index].status {
            StandInMembershipStatus::Active => {
                let now = self.events.tick();
                let membership = &mut self.memberships[index];
                membership.status = StandInMembershipStatus::Inactive;
                membership.roles = vec![DEFAULT_ROLE.to_owned()];
                membership.directory_managed = true;
                membership.updated_at = now;
                let membership = membership.clone();
                self.events.emit("organization_membership.updated", membership.to_value());
                self.revoke_sessions_of(&membership.user_id);
            }
            StandInMembershipStatus::Pending => {
                let membership = self.memberships.remove(index);
                self.events.emit("organization_membership.deleted", membership.to_value());
            }
            StandInMembershipStatus::Inactive => {}
        }
    }

    /// "User reactivated": an inactive membership is `active` again (docs/workos.md §5.3).
    fn reprovision_member(&mut self, directory_user: &StandInDirectoryUser) {
        let Some(index) = self.provisioned_membership(directory_user) else { return };
        if self.memberships[index].status == StandInMembershipStatus::Inactive {
            self.memberships[index].directory_managed = true;
            // `set_status` never refuses; its `Result` only suits the public calls that return it.
            let _ = self.set_status(index, StandInMembershipStatus::Active);
        }
    }

    /// The organization's directory connection deleted by an admin (`dsync.deleted`, the directory in state
    /// `deleting`): its users go with it. WorkOS documents no per-user events for this, and the organization's
    /// memberships stay as they are. Returns the directory's id.
    pub fn delete_directory(&mut self, organization_id: &str) -> Result<String, StandInRefusal> {
        if !self.is_known_organization(organization_id) {
            return Err(StandInRefusal::not_found("Organization", organization_id));
        }
        let directory_id = format!("directory_{}", slug(organization_id));
        self.directory_users.retain(|user| user.directory_id != directory_id);
        let now = self.events.tick();
        self.events.emit(
            "dsync.deleted",
            json!({
                "object": "directory", "id": directory_id, "organization_id": organization_id,
                "name": "Directory", "type": "generic scim v2.0", "state": "deleting", "domains": [],
                "created_at": timestamp(now), "updated_at": timestamp(now),
            }),
        );
        Ok(directory_id)
    }

    /// Adds (`true`) or removes a directory user to or from a group: `dsync.group.user_added` / `user_removed`,
    /// carrying the directory user as it is now.
    pub fn set_directory_group_member(
        &mut self,
        id: &str,
        group: &str,
        member: bool,
    ) -> Result<StandInDirectoryUser, StandInRefusal> {
        let user = self
            .directory_users
            .iter_mut()
            .find(|user| user.id == id)
            .ok_or_else(|| StandInRefusal::not_found("Directory user", id))?;
        user.groups.retain(|existing| existing != group);
        if member {
            user.groups.push(group.to_owned());
        }
        let user = user.clone();
        let event_type = if member { "dsync.group.user_added" } else { "dsync.group.user_removed" };
        let data =
            json!({ "directory_id": user.directory_id, "user": user.to_value(), "group": user.group_value(group) });
        self.events.emit(event_type, data);
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Map;

    use super::*;
    use crate::workos_standin::{SeedOrganization, SeedUser};

    fn store() -> Store {
        Store::new(
            SeedUser::defaults(),
            vec![SeedOrganization { id: "org_standin_acme".into(), name: "Acme".into() }],
            Duration::from_secs(300),
            Duration::from_secs(600),
            Map::new(),
        )
    }

    fn types_since(store: &Store, index: usize) -> Vec<String> {
        store.events.since(index).iter().map(|event| event.event_type.clone()).collect()
    }

    #[test]
    fn the_seed_history_has_organizations_users_and_memberships() {
        let store = store();
        let types = types_since(&store, 0);
        assert_eq!(types.iter().filter(|t| *t == "user.created").count(), 3);
        assert_eq!(types.iter().filter(|t| *t == "organization_membership.created").count(), 2);
        assert_eq!(store.active_organizations("user_standin_alice"), ["org_standin_acme"]);
    }

    #[test]
    fn deleting_a_user_revokes_sessions_deletes_memberships_then_the_user() {
        let mut store = store();
        store.open_session("user_standin_bob");
        let mark = store.events.len();
        store.delete_user("user_standin_bob").expect("known user");
        assert_eq!(types_since(&store, mark), ["session.revoked", "organization_membership.deleted", "user.deleted"]);
        assert!(store.user("user_standin_bob").is_none());
        assert!(store.active_organizations("user_standin_bob").is_empty());
    }

    #[test]
    fn deleting_an_organization_takes_its_memberships_with_it() {
        let mut store = store();
        let mark = store.events.len();
        store.delete_organization("org_standin_acme").expect("known organization");
        assert_eq!(types_since(&store, mark), ["organization.deleted"]);
        assert!(store.memberships().iter().all(|m| m.organization_id != "org_standin_acme"));
        assert!(store.active_organizations("user_standin_alice").is_empty());
    }

    #[test]
    fn deactivation_revokes_sessions_and_repeats_emit_nothing() {
        let mut store = store();
        store.open_session("user_standin_alice");
        let membership = store.memberships.iter().find(|m| m.user_id == "user_standin_alice").cloned().expect("seed");
        let mark = store.events.len();
        let inactive = store.deactivate_membership(&membership.id).expect("deactivates");
        assert_eq!(inactive.status, StandInMembershipStatus::Inactive);
        assert!(inactive.updated_at > membership.updated_at);
        assert_eq!(types_since(&store, mark), ["organization_membership.updated", "session.revoked"]);
        let mark = store.events.len();
        store.deactivate_membership(&membership.id).expect("no-op");
        assert!(types_since(&store, mark).is_empty(), "deactivating an inactive membership emits nothing");
        let again = store.add_membership("user_standin_alice", "org_standin_acme", &[]).expect("reactivates");
        assert_eq!((again.id, again.status), (membership.id, StandInMembershipStatus::Active));
    }

    #[test]
    fn deleting_a_user_is_one_cascade_at_one_time() {
        let mut store = store();
        store.open_session("user_standin_bob");
        let mark = store.events.len();
        store.delete_user("user_standin_bob").expect("known user");
        let cascade = store.events.since(mark);
        assert_eq!(cascade.len(), 3);
        assert!(cascade.iter().all(|event| event.created_at == cascade[0].created_at), "{cascade:?}");
        assert!(cascade[0].created_at > store.events.since(mark - 1)[0].created_at, "after the change before it");
    }

    #[test]
    fn without_directory_provisioning_directory_changes_emit_dsync_events_only() {
        let mut store = store();
        store.directory_provisioning = false;
        store.open_session("user_standin_bob");
        let user = store.provision_directory_user("org_standin_acme", "bob@acme.test").expect("provisioned");
        let mark = store.events.len();
        store.set_directory_user_state(&user.id, "inactive").expect("known");
        store.set_directory_group_member(&user.id, "Engineering", true).expect("known");
        store.remove_directory_user(&user.id).expect("known");
        assert_eq!(types_since(&store, mark), ["dsync.user.updated", "dsync.group.user_added", "dsync.user.deleted"]);
        let updated = &store.events.since(mark)[0].data;
        assert_eq!(updated["previous_attributes"]["state"], "active");
        assert_eq!(updated["state"], "inactive");
        assert_eq!(store.active_organizations("user_standin_bob"), ["org_standin_acme"], "the membership untouched");
    }

    fn bobs_membership(store: &Store) -> StandInMembership {
        store.memberships.iter().find(|m| m.user_id == "user_standin_bob").cloned().expect("seed")
    }

    /// docs/workos.md §5.3 (docs `/authkit/directory-provisioning`): an active member deprovisioned by the directory
    /// becomes an inactive, directory-managed membership with the default role, and loses every session; reactivated
    /// in the directory, the membership is active again; each in one cascade.
    #[test]
    fn directory_provisioning_carries_deprovisioning_and_reactivation_to_the_membership() {
        let mut store = store();
        let membership = bobs_membership(&store);
        store.set_membership_roles(&membership.id, &["admin".to_owned()]).expect("made an admin");
        let (session, _) = store.open_session("user_standin_bob");
        let user = store.provision_directory_user("org_standin_acme", "BOB@acme.test").expect("provisioned");
        let mark = store.events.len();

        store.set_directory_user_state(&user.id, "inactive").expect("deprovisioned");
        assert_eq!(
            types_since(&store, mark),
            ["dsync.user.updated", "organization_membership.updated", "session.revoked"]
        );
        let cascade = store.events.since(mark);
        assert!(cascade.iter().all(|event| event.created_at == cascade[0].created_at), "one time: {cascade:?}");
        let data = &cascade[1].data;
        assert_eq!(
            (&data["status"], &data["role"]["slug"], &data["directory_managed"]),
            (&json!("inactive"), &json!("member"), &json!(true))
        );
        assert_eq!(data["updated_at"], json!(timestamp(cascade[0].created_at)));
        assert!(store.sessions.get(&session.id).is_some_and(|session| session.ended), "Bob's session revoked");
        assert!(store.active_organizations("user_standin_bob").is_empty());

        let mark = store.events.len();
        store.set_directory_user_state(&user.id, "suspended").expect("still deprovisioned");
        assert_eq!(types_since(&store, mark), ["dsync.user.updated"], "an inactive membership is left as it is");

        let mark = store.events.len();
        store.set_directory_user_state(&user.id, "active").expect("reactivated");
        assert_eq!(types_since(&store, mark), ["dsync.user.updated", "organization_membership.updated"]);
        let reactivated = bobs_membership(&store);
        assert_eq!(
            (reactivated.status, reactivated.roles),
            (StandInMembershipStatus::Active, vec!["member".to_owned()])
        );
        assert!(reactivated.directory_managed);

        let mark = store.events.len();
        store.remove_directory_user(&user.id).expect("removed");
        assert_eq!(types_since(&store, mark), ["dsync.user.deleted", "organization_membership.updated"]);
        assert_eq!(bobs_membership(&store).status, StandInMembershipStatus::Inactive);
    }

    #[test]
    fn directory_provisioning_deletes_a_deprovisioned_pending_membership() {
        let mut store = store();
        let index = store.memberships.iter().position(|m| m.user_id == "user_standin_bob").expect("seed");
        store.memberships[index].status = StandInMembershipStatus::Pending;
        let user = store.provision_directory_user("org_standin_acme", "bob@acme.test").expect("provisioned");
        let mark = store.events.len();
        store.set_directory_user_state(&user.id, "inactive").expect("deprovisioned");
        assert_eq!(types_since(&store, mark), ["dsync.user.updated", "organization_membership.deleted"]);
        assert!(store.memberships.iter().all(|m| m.user_id != "user_standin_bob"));
    }
}
