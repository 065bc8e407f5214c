export type { Backplane, BackplaneListener, BackplaneMessage } from './backplane/backplane.ts';
export { MemoryBackplane } from './backplane/memory-backplane.ts';
export {
  AuthenticationUnavailableError,
  ConnectionRefusedError,
  ForbiddenError,
  HubError,
} from './errors.ts';
export { mountOnHttpServer } from './http/mount-node.ts';
export { registerFastifyHub } from './http/mount-fastify.ts';
export {
  defineHub,
  type CallerClients,
  type ClientProxy,
  type GroupManager,
  type HubCallContext,
  type HubClients,
  type HubDefinition,
  type HubMethod,
  type HubStreamMethod,
  type HubUser,
  type SendScope,
  type SingleClientProxy,
} from './hub.ts';
export {
  HubServer,
  type AuthRequest,
  type Authenticate,
  type ErrorSite,
  type HubServerOptions,
  type HubServerStats,
} from './hub-server.ts';
export type { TransportKind } from './transports/transport.ts';
export { RedisBackplane, type RedisBackplaneOptions } from './backplane/redis-backplane.ts';
