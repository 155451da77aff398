//! What a device's transfers and kernels cost: the figures the cost model
//! predicts device stages with. Each device says its own (calibrated on a
//! GPU, configured on the simulated device).

/// What moving data to a device and computing there costs, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceCosts {
    /// Host-device bandwidth, bytes per second (each direction).
    pub link_bytes_per_s: f64,
    /// Fixed cost of one transfer, seconds.
    pub link_latency_s: f64,
    /// Fixed cost of one kernel launch, seconds.
    pub launch_s: f64,
    /// Elements per second of one elementwise kernel.
    pub elements_per_s: f64,
}

impl Default for DeviceCosts {
    /// Typical figures of a PCIe 4/5 data-center GPU, used until calibrated.
    fn default() -> Self {
        DeviceCosts {
            link_bytes_per_s: 20e9,
            link_latency_s: 10e-6,
            launch_s: 5e-6,
            elements_per_s: 50e9,
        }
    }
}
