"""The sidebar on a narrow screen (#27): in a window narrower than `NARROW_PX` it starts collapsed
and closes again after a page is picked from it, as Streamlit does on phones, so the page gets
the whole width.

Streamlit's own `initial_sidebar_state="auto"` collapses only at or below its `md` breakpoint,
768 px (its frontend compares `window.innerWidth` with the theme's breakpoint, which no setting
changes), so at 800 px a third of the screen went to the sidebar. A server cannot know the width,
so a few lines of JavaScript (`st.html`, not iframed) press the sidebar's own collapse button.
Once the user opens or closes the sidebar themselves, Streamlit remembers it in localStorage
(`stSidebarCollapsed-<page base>`) and that choice is left alone on load; the script's own click
is not remembered, so a wider window later opens with the sidebar, as "auto" does."""

from __future__ import annotations

NARROW_PX = 1000  # below this width of the window the sidebar starts collapsed

SCRIPT = """<script>
(() => {
  if (window.afmNarrowSidebar) return;  // once per tab: the page changes, the window stays
  window.afmNarrowSidebar = true;
  const PREFIX = "stSidebarCollapsed-";
  const narrow = () => window.innerWidth < NARROW_PX;
  const stored = () => Object.keys(window.localStorage).filter(key => key.startsWith(PREFIX));
  const collapse = () => {
    const sidebar = document.querySelector("[data-testid='stSidebar']");
    const button = document.querySelector("[data-testid='stSidebarCollapseButton'] button");
    if (!sidebar || !button) return false;
    if (sidebar.getAttribute("data-collapsed") === "false") {
      button.click();
      stored().forEach(key => window.localStorage.removeItem(key));  // not the user's choice
    }
    return true;
  };
  const onLoad = tries => {
    if (narrow() && stored().length === 0 && !collapse() && tries > 0) setTimeout(() => onLoad(tries - 1), 100);
  };
  onLoad(100);
  window.addEventListener("resize", () => { if (narrow() && stored().length === 0) collapse(); });
  document.addEventListener("click", event => {
    if (narrow() && event.target.closest("[data-testid='stSidebarNav'] a")) setTimeout(collapse, 0);
  }, true);
})();
</script>""".replace("NARROW_PX", str(NARROW_PX))


def collapse_sidebar_when_narrow(container) -> None:
    """Draw the script (no visible element) into `container`, the sidebar."""
    container.html(SCRIPT, unsafe_allow_javascript=True)
