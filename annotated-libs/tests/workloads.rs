//! The swap-the-import story: the same workload source, compiled against the
//! plain CPU library and against the annotated module, gives the same results.

use annotated_libs::workloads::{bach, cpu};
use bach_runtime::{evaluate, Config, Graph};
use ndarray::Array1;

mod common;
use common::{bits, uniform};

#[test]
fn blackscholes_bach_equals_cpu_bit_for_bit() {
    for (n, batch) in [
        (0, None),
        (1, None),
        (1000, Some(7)),
        (100_003, None),
        (65_536, Some(1024)),
    ] {
        let inputs: Vec<Array1<f64>> = (0..5).map(|i| uniform(n, 1.0, 100.0, 11 + i)).collect();
        let (call_ref, put_ref) =
            cpu::blackscholes(&inputs[0], &inputs[1], &inputs[2], &inputs[3], &inputs[4]);
        let graph = Graph::with_config(Config {
            batch_size: batch,
            ..Config::default()
        });
        let (call, put) = graph
            .enter(|| {
                let (c, p) =
                    bach::blackscholes(&inputs[0], &inputs[1], &inputs[2], &inputs[3], &inputs[4]);
                evaluate((c, p))
            })
            .unwrap();
        assert_eq!(bits(&call), bits(&call_ref), "call, n = {n}");
        assert_eq!(bits(&put), bits(&put_ref), "put, n = {n}");
    }
}

#[test]
fn haversine_bach_equals_cpu_bit_for_bit() {
    for n in [0, 1, 17, 4099, 200_000] {
        let lat = uniform(n, -1.5, 1.5, 3);
        let lon = uniform(n, -3.1, 3.1, 4);
        let expected = cpu::haversine(&lat, &lon);
        let got = evaluate(bach::haversine(&lat, &lon)).unwrap();
        assert_eq!(bits(&got), bits(&expected), "n = {n}");
    }
}
