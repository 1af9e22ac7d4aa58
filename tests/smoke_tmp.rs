mod common;
use wgpu_rnn::*;
#[test]
fn smoke() {
    for algo in [Algorithm::Persistent, Algorithm::Stepwise] {
        let mut cfg = LstmConfig::new(3, 5);
        cfg.num_layers = 2; cfg.bidirectional = true; cfg.proj_size = 3;
        let mut g = Lstm::new(cfg, common::gpu(), 7).unwrap();
        g.set_algorithm(algo);
        let c = Lstm::new(cfg, Backend::Cpu, 7).unwrap();
        let x = common::rand3((4, 3, 3), 1, 1.0);
        let lens = [4usize, 2, 3];
        let (og, tg) = g.forward_train(x.view(), None, Some(&lens)).unwrap();
        let (oc, tc) = c.forward_train(x.view(), None, Some(&lens)).unwrap();
        common::assert_close("out", og.out.view().into_dyn(), oc.out.view(), 1e-5, 1e-4);
        common::assert_close("h_n", og.h_n.view().into_dyn(), oc.h_n.view(), 1e-5, 1e-4);
        common::assert_close("c_n", og.c_n.view().into_dyn(), oc.c_n.view(), 1e-5, 1e-4);
        let dy = common::rand3(og.out.dim(), 2, 1.0);
        let dh = common::rand3(og.h_n.dim(), 3, 1.0);
        let dc = common::rand3(og.c_n.dim(), 4, 1.0);
        let gg = g.backward(&tg, dy.view(), Some(dh.view()), Some(dc.view())).unwrap();
        let gc = c.backward(&tc, dy.view(), Some(dh.view()), Some(dc.view())).unwrap();
        common::assert_close("dx", gg.dx.view().into_dyn(), gc.dx.view(), 1e-5, 1e-4);
        common::assert_close("dh0", gg.dh0.view().into_dyn(), gc.dh0.view(), 1e-5, 1e-4);
        common::assert_close("dc0", gg.dc0.view().into_dyn(), gc.dc0.view(), 1e-5, 1e-4);
        for (k, v) in &gc.weights { common::assert_close(k, gg.weights[k].view(), v.view(), 1e-5, 1e-4); }
        eprintln!("{algo:?} ok {:?}", g.last_stats());
    }
}
