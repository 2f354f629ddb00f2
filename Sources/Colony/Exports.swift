@_exported import ColonyNode
