// What the signed-in person may do, as `/api/me` says; the API checks every call anyway.

/** True when `me` administers `slug` (owners administer every project). */
export function administers(me, slug) {
  return me.role === 'owner' || me.projects.some((p) => p.slug === slug && p.role === 'admin');
}

/** True when `me` manages users and reads the audit log (owners and project admins). */
export function managesUsers(me) {
  return me.role === 'owner' || me.projects.some((p) => p.role === 'admin');
}
