export { Netlink } from './netlink';
export type { LinkInfo, AddressInfo, RouteSpec, RuleSpec } from './netlink';
export { NetlinkError } from './errors';
export { inNetns, openNetns } from './netns';
