/**
 * Two deployments pointed at the same shared thing (a Redis key prefix, a RabbitMQ vhost): each would read the
 * other's cache entries and replays, or consume the other's events, all the while reporting healthy. The first
 * deployment to use it claims it; another is refused.
 */
export class DeploymentConflictError extends Error {
  constructor(
    readonly shared: string,
    readonly owner: string,
    readonly deployment: string,
    remedy: { readonly setting: string; readonly release: string },
  ) {
    super(
      `${shared} belongs to another deployment (${owner}), not to this one (${deployment}): give each deployment ` +
        `its own ${remedy.setting}. If that deployment is gone, or this one's database was restored under ` +
        `another name, ${remedy.release}.`,
    );
    this.name = 'DeploymentConflictError';
  }
}
