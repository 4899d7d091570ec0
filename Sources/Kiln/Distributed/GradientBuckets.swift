import Dispatch

/// The gradient allreduce of a data-parallel step. Trainable parameters' gradients are grouped in
/// the order the schedule finishes them into buckets of about `bucketBytes`; a bucket is packed and
/// its sum started (non-blocking) as soon as the node finishing its last gradient has run, so it
/// travels while the rest of the backward pass computes. `complete()` waits for the rest and
/// writes back the averages before the optimizer updates run. Every rank builds the same buckets
/// from the same plan, so collectives match across ranks.
final class GradientBuckets {
    private struct Bucket {
        var members: [Tensor]
        /// Position in the plan's order of the node that finishes the bucket's last gradient.
        var readyAt: Int
        var buffer: UnsafeMutableBufferPointer<Float>
        var pending: (any PendingReduction)?
    }

    private let communicator: any Communicator
    private var buckets: [Bucket] = []
    private var next = 0
    private(set) var statistics = CommunicationStatistics()

    /// - Parameters:
    ///   - gradient: the tensor holding a value's gradient (the executor's slot).
    init(graph: Graph, plan: Plan, gradient: (Graph.ValueID) -> Tensor, communicator: any Communicator, bucketBytes: Int) {
        self.communicator = communicator
        let positions = plan.positions
        let finished = graph.parameters.filter { graph.isTrainable($0) }.compactMap { parameter -> (Int, String, Tensor)? in
            guard let id = graph.gradients[parameter.name] else { return nil }
            let producer = graph.values[id.index].producer
            return (producer.flatMap { positions[$0] } ?? -1, parameter.name, gradient(id))
        }.sorted { ($0.0, $0.1) < ($1.0, $1.1) }
        var members: [Tensor] = [], bytes = 0, readyAt = -1
        func close() {
            guard !members.isEmpty else { return }
            let floats = members.reduce(0) { $0 + $1.count }
            buckets.append(Bucket(members: members, readyAt: readyAt, buffer: .allocate(capacity: floats), pending: nil))
            (members, bytes) = ([], 0)
        }
        for (position, _, tensor) in finished {
            members.append(tensor)
            bytes += tensor.byteCount
            readyAt = position
            if bytes >= bucketBytes { close() }
        }
        close()
    }

    deinit { for bucket in buckets { bucket.buffer.deallocate() } }

    var bucketCount: Int { buckets.count }

    /// After the node at `position` ran: starts the buckets it completed and lets running ones progress.
    func finished(position: Int) throws {
        let start = DispatchTime.now().uptimeNanoseconds
        defer { statistics.seconds += seconds(since: start) }
        while next < buckets.count, buckets[next].readyAt <= position {
            var offset = 0
            for tensor in buckets[next].members {
                (buckets[next].buffer.baseAddress! + offset).update(from: tensor.floats, count: tensor.count)
                offset += tensor.count
            }
            buckets[next].pending = try communicator.startAllReduceSum(buckets[next].buffer)
            next += 1
        }
        for index in 0..<next { _ = try buckets[index].pending?.poll() }
    }

    /// Waits for every bucket and writes the averaged gradients back; ready for the next step.
    func complete() throws {
        try finished(position: .max)
        let start = DispatchTime.now().uptimeNanoseconds
        let scale = 1 / Float(communicator.size)
        for index in buckets.indices {
            let waitStart = DispatchTime.now().uptimeNanoseconds
            try buckets[index].pending?.wait()
            statistics.waitSeconds += seconds(since: waitStart)
            buckets[index].pending = nil
            var offset = 0
            for tensor in buckets[index].members {
                let summed = buckets[index].buffer.baseAddress! + offset
                for i in 0..<tensor.count { tensor.floats[i] = summed[i] * scale }
                offset += tensor.count
            }
            statistics.bytes += buckets[index].buffer.count * 4
        }
        statistics.buckets += buckets.count
        statistics.steps += 1
        next = 0
        statistics.seconds += seconds(since: start)
    }

    private func seconds(since start: UInt64) -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
}
