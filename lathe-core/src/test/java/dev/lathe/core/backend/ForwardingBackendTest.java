package dev.lathe.core.backend;

import org.junit.jupiter.api.Test;

import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

class ForwardingBackendTest {
    /** A method of Backend (abstract or default) that ForwardingBackend does not declare would not be forwarded. */
    @Test
    void everyBackendMethodIsForwarded() {
        List<String> missing = new ArrayList<>();
        int checked = 0;
        for (Method m : Backend.class.getMethods()) {
            if (Modifier.isStatic(m.getModifiers())) continue;
            checked++;
            try {
                ForwardingBackend.class.getDeclaredMethod(m.getName(), m.getParameterTypes());
            } catch (NoSuchMethodException e) {
                missing.add(m.toString());
            }
        }
        assertThat(checked).as("Backend methods").isGreaterThan(30);
        assertThat(missing).as("Backend methods ForwardingBackend does not forward").isEmpty();
    }
}
