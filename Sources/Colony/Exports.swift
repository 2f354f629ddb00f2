// `import Colony` gives a client program the client and the values it works with. Nodes import
// `ColonyNode` (handlers), programs that run a coordinator `ColonyCoordinator`.
@_exported import ColonyModel
@_exported import struct NNG.TLSSettings
