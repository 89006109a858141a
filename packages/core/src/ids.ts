/** Distinct string types the type system will not confuse. */
export type PeerIdString = string & { readonly __brand: 'PeerId' }
export type ClusterName = string & { readonly __brand: 'ClusterName' }

export const asPeerId = (value: string): PeerIdString => value as PeerIdString

const CLUSTER_NAME = /^[a-z0-9][a-z0-9-]{0,31}$/

/** Cluster names go into mDNS service tags and protocol ids: lower-case letters, digits, dashes; 1-32 long. */
export function parseClusterName(value: string): ClusterName {
  if (!CLUSTER_NAME.test(value))
    throw new RangeError(
      `Expected --cluster to be 1-32 lower-case letters, digits or dashes (starting with a letter or digit), got \`${value}\``
    )
  return value as ClusterName
}
