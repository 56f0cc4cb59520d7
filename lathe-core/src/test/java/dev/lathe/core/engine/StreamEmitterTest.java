package dev.lathe.core.engine;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

class StreamEmitterTest {

    private static RequestOutput delta(String id, int token) {
        return new RequestOutput(id, 0, new int[]{token}, "t" + token, null, null, null, 1, token + 1, 0);
    }

    private static List<Integer> drain(QueueRequestStream s) throws InterruptedException {
        var got = new ArrayList<Integer>();
        RequestOutput o;
        while ((o = s.poll(5, TimeUnit.SECONDS)) != null) got.add(o.tokenIds()[0]);
        return got;
    }

    @Test
    void aThreadedEmitterDeliversEverythingInOrderByItsLastFlush() throws InterruptedException {
        var a = new QueueRequestStream("a", id -> {});
        var b = new QueueRequestStream("b", id -> {});
        try (var emitter = new StreamEmitter("test-streams", true)) {
            for (int t = 0; t < 1000; t++) {
                emitter.push(t % 2 == 0 ? a : b, delta(t % 2 == 0 ? "a" : "b", t));
                if (t % 7 == 0) emitter.flush();
            }
            emitter.end(a, null);
            assertThat(b.poll(50, TimeUnit.MILLISECONDS)).isNotNull();  // flushed batches arrive
            emitter.push(b, delta("b", 5000));
            emitter.end(b, new IllegalStateException("failed"));
            // not flushed yet: a's last deltas and its end, and b's, go out with the flush in close
        }
        List<Integer> gotA = drain(a);
        assertThat(gotA).hasSize(500);
        for (int i = 0; i < gotA.size(); i++) assertThat(gotA.get(i)).isEqualTo(2 * i);
        assertThat(a.isDone()).isTrue();
        assertThat(a.error()).isNull();
        List<Integer> gotB = drain(b);
        assertThat(gotB).hasSize(500);  // 499 odd deltas after the one polled above, then 5000
        assertThat(gotB.getLast()).isEqualTo(5000);
        for (int i = 0; i + 1 < gotB.size(); i++) assertThat(gotB.get(i)).isEqualTo(3 + 2 * i);
        assertThat(b.error()).hasMessage("failed");
    }

    @Test
    void withoutAThreadPushesAndEndsActAtOnce() throws InterruptedException {
        var a = new QueueRequestStream("a", id -> {});
        var emitter = new StreamEmitter("unused", false);
        emitter.push(a, delta("a", 7));
        assertThat(a.poll(0, TimeUnit.MILLISECONDS).tokenIds()).containsExactly(7);
        emitter.end(a, null);
        assertThat(a.isDone()).isTrue();
        emitter.close();
    }
}
