package dev.lathe.core.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;

import java.nio.file.Path;
import java.util.BitSet;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;

/**
 * Token strings and ids read from {@code tokenizer.json}: the model's vocabulary plus the added
 * tokens. The native tokenizer does not expose these, so they are parsed here once.
 *
 * @param tokenToId every token string, model vocabulary and added tokens
 * @param idToToken indexed by id; null where no token has that id
 * @param special   ids of added tokens marked {@code "special": true}
 */
record Vocabulary(Map<String, Integer> tokenToId, String[] idToToken, BitSet special) {

    static Vocabulary fromTokenizerJson(JsonNode root, Path source) {
        Map<String, Integer> tokenToId = new HashMap<>();
        JsonNode model = root.path("model");
        JsonNode vocab = model.get("vocab");
        if (vocab == null || vocab.isNull()) {
            throw new IllegalArgumentException(source + ": has no model.vocab; cannot map tokens to ids");
        }
        if (vocab.isObject()) {                 // BPE, WordPiece, WordLevel: {"token": id}
            for (Iterator<Map.Entry<String, JsonNode>> it = vocab.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                tokenToId.put(e.getKey(), e.getValue().asInt());
            }
        } else if (vocab.isArray()) {           // Unigram: [[piece, score], ...], id = position
            int id = 0;
            for (JsonNode entry : vocab) {
                tokenToId.put(entry.get(0).asText(), id++);
            }
        } else {
            throw new IllegalArgumentException(source + ": model.vocab is neither an object nor a list");
        }
        BitSet special = new BitSet();
        for (JsonNode added : root.path("added_tokens")) {
            int id = added.path("id").asInt(-1);
            String content = added.path("content").asText(null);
            if (id < 0 || content == null) {
                throw new IllegalArgumentException(source + ": added token without id or content: " + added);
            }
            tokenToId.put(content, id);
            if (added.path("special").asBoolean(false)) {
                special.set(id);
            }
        }
        int size = tokenToId.values().stream().mapToInt(Integer::intValue).max().orElse(-1) + 1;
        String[] idToToken = new String[size];
        tokenToId.forEach((token, id) -> idToToken[id] = token);
        return new Vocabulary(Map.copyOf(tokenToId), idToToken, special);
    }
}
