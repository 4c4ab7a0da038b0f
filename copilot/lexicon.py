"""Words, for Jules's offline planner: folding, tokens, light stemming, and Portuguese/Spanish words carried to the
English the catalog is written in. A general language resource (the verbs and nouns of automation), not a list
made for any dataset: the catalog's own descriptions decide which type a word points to."""

from __future__ import annotations

import re
import unicodedata

# Portuguese and Spanish (folded) -> English, for the vocabulary of automations
TRANSLATE = {
    # sending and posting
    "envia": "send",
    "enviar": "send",
    "envie": "send",
    "enviale": "send",
    "envialo": "send",
    "enviaselo": "send",
    "manda": "send",
    "mandar": "send",
    "mande": "send",
    "mandame": "send",
    "manda-me": "send",
    "publica": "post",
    "publicar": "post",
    "publique": "post",
    "posta": "post",
    "postar": "post",
    "avisa": "notify",
    "avisame": "notify",
    "avise": "notify",
    "notifica": "notify",
    "alerta": "alert",
    "correo": "email",
    "correos": "email",
    "e-mail": "email",
    "mail": "email",
    "emails": "email",
    "mensagem": "message",
    "mensaje": "message",
    "canal": "channel",
    # fetching and calling
    "puxa": "fetch",
    "puxar": "fetch",
    "busca": "fetch",
    "buscar": "fetch",
    "obtem": "fetch",
    "obtener": "fetch",
    "obten": "fetch",
    "trae": "fetch",
    "traer": "fetch",
    "descarga": "fetch",
    "baixa": "fetch",
    "consulta": "fetch",
    "chama": "call",
    "chamar": "call",
    "llama": "call",
    "llamar": "call",
    "pedidos": "orders",
    "pedido": "order",
    "genera": "generate",
    "gera": "generate",
    "gerar": "generate",
    "generar": "generate",
    "cria": "create",
    "crea": "create",
    "criar": "create",
    "crear": "create",
    "atualiza": "update",
    "actualiza": "update",
    "pede": "ask",
    "pedir": "ask",
    "pide": "ask",
    "pedile": "ask",
    "usa": "use",
    "usar": "use",
    "utiliza": "use",
    "faz": "make",
    "fazer": "make",
    "haz": "make",
    "hacer": "make",
    "coloca": "put",
    "pon": "put",
    "poner": "put",
    "verifica": "check",
    "verificar": "check",
    "revisa": "check",
    "comprueba": "check",
    "conta": "count",
    "cuenta": "count",
    "calcula": "compute",
    "calcular": "compute",
    "guarda": "save",
    "salva": "save",
    # AI
    "resumo": "summary",
    "resume": "summarize",
    "resumir": "summarize",
    "resumen": "summary",
    "traduz": "translate",
    "traduzir": "translate",
    "traduce": "translate",
    "traducir": "translate",
    "classifica": "classify",
    "classificar": "classify",
    "clasifica": "classify",
    "clasificar": "classify",
    "extrai": "extract",
    "extrair": "extract",
    "extrae": "extract",
    "extraer": "extract",
    "escreve": "write",
    "escrever": "write",
    "escribe": "write",
    "escribir": "write",
    "redacta": "write",
    "ia": "ai",
    "rascunho": "draft",
    "borrador": "draft",
    # control
    "cada": "each",
    "todos": "all",
    "lista": "list",
    "aprova": "approve",
    "aprovar": "approve",
    "aprobar": "approve",
    "aprueba": "approve",
    "espera": "wait",
    "esperar": "wait",
    "aguarda": "wait",
    "erro": "error",
    "falha": "fail",
    "falhar": "fail",
    "falla": "fail",
    "fallo": "fail",
    "evento": "event",
    "fluxo": "flow",
    "flujo": "flow",
    "filtra": "filter",
    "filtrar": "filter",
    "registra": "log",
}
STOP = {
    "a",
    "an",
    "the",
    "to",
    "of",
    "in",
    "on",
    "at",
    "for",
    "from",
    "with",
    "and",
    "or",
    "by",
    "it",
    "its",
    "is",
    "are",
    "be",
    "this",
    "that",
    "these",
    "those",
    "my",
    "our",
    "your",
    "me",
    "us",
    "we",
    "i",
    "you",
    "they",
    "them",
    "then",
    "into",
    "as",
    "if",
    "so",
    "any",
    "some",
    "each",
    "per",
    "via",
    "also",
    "just",
    "please",
}
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def fold(text: str) -> str:
    lowered = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in lowered if not unicodedata.combining(c))


def stem(word: str) -> str:
    """A light English stem: enough for posts/posting/posted and summary/summaries to meet."""
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + keep
    return word


def tokens(text: str) -> list[str]:
    """Content words of a text, folded, translated to English where known, stemmed."""
    out = []
    for raw in _TOKEN.findall(fold(text)):
        word = TRANSLATE.get(raw, raw)
        for part in word.replace("-", " ").replace("'", " ").split():
            if part not in STOP and len(part) > 1:
                out.append(stem(part))
    return out
