/// Memory planning: every activation (and fed input) of a step gets an offset in ONE arena.
/// Liveness runs over the schedule; an elementwise op writes over its input when that input dies
/// there (in place); buffers are then placed greedily, largest first, at the lowest offset that
/// does not overlap a buffer alive at the same time. Parameters, gradients and optimizer state
/// live in their own stores, outside the arena.
public struct Plan: Sendable {
    /// One arena region shared by a chain of in-place values.
    public struct Region: Sendable {
        /// Values stored here, in the order they are written.
        public var values: [Graph.ValueID]
        public var offset: Int
        public var bytes: Int
        /// First and last schedule positions at which the region holds a live value (-1: fed before step 0).
        public var start: Int
        public var end: Int
    }

    public let graph: Graph
    /// Node indices in execution order.
    public let order: [Int]
    public internal(set) var regions: [Region]
    /// Region index of each arena-resident value (by value index).
    public let regionOfValue: [Int: Int]
    public let arenaBytes: Int
    /// Sum of all arena values' sizes: what allocating every buffer separately would take.
    public let naiveBytes: Int
    /// The largest total size of values alive at one step: no placement can use less.
    public let lowerBoundBytes: Int
    /// Final parameter gradients (their own store).
    public let gradientBytes: Int

    public static let alignment = 64

    /// Plans `graph`; `keep` names values that must survive the whole step (beyond the outputs).
    public init(_ graph: Graph, keep: Set<String> = []) {
        self.graph = graph
        order = Schedule.order(graph)
        var position = [Int](repeating: 0, count: graph.nodes.count)
        for (i, node) in order.enumerated() { position[node] = i }
        let last = order.count

        let gradientValues = Set(graph.gradients.values)
        let kept = Set(graph.outputs.values).union(keep.compactMap { try? graph.value(named: $0).id })
        func inArena(_ v: Graph.Value) -> Bool {
            (v.role == .activation || v.role == .input) && !gradientValues.contains(v.id)
        }
        func bytes(_ v: Graph.Value) -> Int { v.shape.count * v.dtype.byteSize }

        // Liveness: [producer position, last reader position]; outputs and kept values live to the end.
        var start = [Int](repeating: -1, count: graph.values.count)
        var end = [Int](repeating: -1, count: graph.values.count)
        for v in graph.values where inArena(v) {
            start[v.id.index] = v.producer.map { position[$0] } ?? -1
            end[v.id.index] =
                kept.contains(v.id) ? last : graph.readers(of: v.id).map { position[$0.index] }.max() ?? start[v.id.index]
        }

        // Regions: in-place outputs join their input's region.
        var regions: [Region] = []
        var regionOf: [Int: Int] = [:]
        for index in order {
            let node = graph.nodes[index]
            for input in node.inputs where inArena(graph[input]) && regionOf[input.index] == nil && graph[input].producer == nil {
                regionOf[input.index] = regions.count
                regions.append(Region(values: [input], offset: 0, bytes: bytes(graph[input]), start: -1, end: end[input.index]))
            }
            for (k, out) in node.outputs.enumerated() where inArena(graph[out]) {
                let value = graph[out]
                if k == 0, let i = node.op.inPlaceInput, i < node.inputs.count {
                    let source = node.inputs[i]
                    if let r = regionOf[source.index], graph[source].role == .activation, end[source.index] == position[index],
                        !kept.contains(source), bytes(graph[source]) == bytes(value), regions[r].values.last == source
                    {
                        regions[r].values.append(out)
                        regions[r].end = max(regions[r].end, end[out.index])
                        regionOf[out.index] = r
                        continue
                    }
                }
                regionOf[out.index] = regions.count
                regions.append(Region(values: [out], offset: 0, bytes: bytes(value), start: start[out.index], end: end[out.index]))
            }
        }

        // Greedy placement, largest region first.
        var placed: [Int] = []
        for r in regions.indices.sorted(by: { (regions[$0].bytes, -regions[$0].start) > (regions[$1].bytes, -regions[$1].start) }) {
            let conflicts = placed.filter { regions[$0].start <= regions[r].end && regions[r].start <= regions[$0].end }
                .map { (regions[$0].offset, regions[$0].offset + Plan.aligned(regions[$0].bytes)) }.sorted { $0.0 < $1.0 }
            var offset = 0
            for (lo, hi) in conflicts {
                if offset + regions[r].bytes <= lo { break }
                offset = max(offset, hi)
            }
            regions[r].offset = offset
            placed.append(r)
        }

        self.regions = regions
        regionOfValue = regionOf
        arenaBytes = regions.map { $0.offset + Plan.aligned($0.bytes) }.max() ?? 0
        naiveBytes = graph.values.filter(inArena).reduce(0) { $0 + bytes($1) }
        var liveAt = [Int](repeating: 0, count: last + 2)
        for region in regions { for p in max(region.start, -1)...region.end { liveAt[p + 1] += region.bytes } }
        lowerBoundBytes = liveAt.max() ?? 0
        gradientBytes = gradientValues.reduce(0) { $0 + bytes(graph[$1]) }
    }

    static func aligned(_ bytes: Int) -> Int { (bytes + alignment - 1) / alignment * alignment }

    /// Position of each node in the schedule.
    public var positions: [Int: Int] { Dictionary(uniqueKeysWithValues: order.enumerated().map { ($1, $0) }) }

    public var stepCounts: [Graph.Phase: Int] {
        order.reduce(into: [:]) { counts, index in counts[graph.nodes[index].phase, default: 0] += 1 }
    }
}
