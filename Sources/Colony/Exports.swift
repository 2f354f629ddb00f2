// `import Colony` gives users the whole public surface: client, handlers, node, coordinator.
@_exported import ColonyCore
@_exported import ColonyCoordinator
@_exported import ColonyNode
@_exported import ColonyStore
@_exported import struct NNG.TLSSettings
